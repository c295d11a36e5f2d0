CREATE TABLE `join_tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`hash` text NOT NULL,
	`hostname` text,
	`single_use` integer DEFAULT true NOT NULL,
	`created_by` text,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`used_at` integer,
	`used_by` text,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `join_tokens_hash_unique` ON `join_tokens` (`hash`);--> statement-breakpoint
CREATE TABLE `webhook_pushes` (
	`app` text NOT NULL,
	`branch` text NOT NULL,
	`sha` text NOT NULL,
	`delivery_id` text NOT NULL,
	`deployment_id` text,
	`received_at` integer NOT NULL,
	PRIMARY KEY(`app`, `branch`, `sha`)
);
--> statement-breakpoint
ALTER TABLE `api_tokens` ADD `apps` text;