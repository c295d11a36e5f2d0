CREATE TABLE `agents` (
	`id` text PRIMARY KEY NOT NULL,
	`hostname` text NOT NULL,
	`labels` text DEFAULT '[]' NOT NULL,
	`version` text NOT NULL,
	`capabilities` text DEFAULT '{}' NOT NULL,
	`state` text DEFAULT 'idle' NOT NULL,
	`containers` text DEFAULT '[]' NOT NULL,
	`token_version` integer DEFAULT 1 NOT NULL,
	`revoked` integer DEFAULT false NOT NULL,
	`last_heartbeat_at` integer,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `agents_hostname_unique` ON `agents` (`hostname`);--> statement-breakpoint
CREATE TABLE `api_tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`scope` text NOT NULL,
	`hash` text NOT NULL,
	`created_at` integer NOT NULL,
	`last_used_at` integer,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_tokens_hash_unique` ON `api_tokens` (`hash`);--> statement-breakpoint
CREATE TABLE `idempotency_keys` (
	`key` text NOT NULL,
	`principal` text NOT NULL,
	`route` text NOT NULL,
	`request_hash` text NOT NULL,
	`status` integer NOT NULL,
	`body` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `idempotency_keys_key_idx` ON `idempotency_keys` (`principal`,`key`);--> statement-breakpoint
CREATE TABLE `job_logs` (
	`job_id` text NOT NULL,
	`seq` integer NOT NULL,
	`ts` text NOT NULL,
	`stream` text NOT NULL,
	`line` text NOT NULL,
	PRIMARY KEY(`job_id`, `seq`),
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `jobs` (
	`id` text PRIMARY KEY NOT NULL,
	`deployment_id` text,
	`kind` text NOT NULL,
	`app` text NOT NULL,
	`target_host` text,
	`target_labels` text,
	`spec` text NOT NULL,
	`status` text DEFAULT 'pending' NOT NULL,
	`agent_id` text,
	`lease_id` text,
	`lease_expires_at` integer,
	`attempts` integer DEFAULT 0 NOT NULL,
	`max_attempts` integer NOT NULL,
	`cancel_requested` integer DEFAULT false NOT NULL,
	`dedupe_key` text,
	`result` text,
	`error` text,
	`timeout_seconds` integer NOT NULL,
	`queue_deadline` integer NOT NULL,
	`log_offset` integer DEFAULT 0 NOT NULL,
	`log_bytes` integer DEFAULT 0 NOT NULL,
	`log_truncated` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	`assigned_at` integer,
	`started_at` integer,
	`finished_at` integer,
	FOREIGN KEY (`agent_id`) REFERENCES `agents`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `jobs_claim_idx` ON `jobs` (`status`,`target_host`,`id`);--> statement-breakpoint
CREATE INDEX `jobs_agent_idx` ON `jobs` (`agent_id`,`status`);--> statement-breakpoint
CREATE INDEX `jobs_app_idx` ON `jobs` (`app`,`id`);--> statement-breakpoint
CREATE INDEX `jobs_dedupe_idx` ON `jobs` (`dedupe_key`,`status`);