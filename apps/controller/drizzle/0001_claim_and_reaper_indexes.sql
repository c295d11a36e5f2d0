CREATE INDEX `jobs_claim_labels_idx` ON `jobs` (`status`,`target_labels`,`id`);--> statement-breakpoint
CREATE INDEX `jobs_queue_deadline_idx` ON `jobs` (`status`,`queue_deadline`);