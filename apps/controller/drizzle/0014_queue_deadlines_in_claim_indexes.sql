DROP INDEX `jobs_queue_deadline_idx`;--> statement-breakpoint
DROP INDEX `jobs_claim_host_idx`;--> statement-breakpoint
DROP INDEX `jobs_claim_labels_idx`;--> statement-breakpoint
CREATE INDEX `jobs_untargeted_pending_idx` ON `jobs` (`queue_deadline`) WHERE status = 'pending' AND target_host IS NULL AND target_labels IS NULL;--> statement-breakpoint
CREATE INDEX `jobs_claim_host_idx` ON `jobs` (`target_host`,`id`,`queue_deadline`) WHERE status = 'pending' AND target_host IS NOT NULL;--> statement-breakpoint
CREATE INDEX `jobs_claim_labels_idx` ON `jobs` (`target_labels`,`id`,`queue_deadline`) WHERE status = 'pending' AND target_labels IS NOT NULL;