DROP INDEX `jobs_claim_idx`;--> statement-breakpoint
CREATE INDEX `jobs_claim_host_idx` ON `jobs` (`target_host`,`id`) WHERE status = 'pending';--> statement-breakpoint
CREATE INDEX `jobs_claim_labels_idx` ON `jobs` (`target_labels`,`id`) WHERE status = 'pending';--> statement-breakpoint
CREATE INDEX `jobs_queue_deadline_idx` ON `jobs` (`queue_deadline`) WHERE status = 'pending';