DROP INDEX `jobs_agent_idx`;--> statement-breakpoint
DROP INDEX `jobs_dedupe_idx`;--> statement-breakpoint
DROP INDEX `jobs_claim_host_idx`;--> statement-breakpoint
DROP INDEX `jobs_claim_labels_idx`;--> statement-breakpoint
CREATE INDEX `jobs_held_idx` ON `jobs` (`agent_id`) WHERE status IN ('assigned', 'running');--> statement-breakpoint
CREATE INDEX `jobs_active_dedupe_idx` ON `jobs` (`dedupe_key`) WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'assigned', 'running');--> statement-breakpoint
CREATE INDEX `jobs_claim_host_idx` ON `jobs` (`target_host`,`id`) WHERE status = 'pending' AND target_host IS NOT NULL;--> statement-breakpoint
CREATE INDEX `jobs_claim_labels_idx` ON `jobs` (`target_labels`,`id`) WHERE status = 'pending' AND target_labels IS NOT NULL;--> statement-breakpoint
DROP INDEX `outbox_app_idx`;