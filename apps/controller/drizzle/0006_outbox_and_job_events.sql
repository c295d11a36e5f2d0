CREATE TABLE `outbox` (
	`id` integer PRIMARY KEY NOT NULL,
	`type` text NOT NULL,
	`app` text,
	`subject` text,
	`data` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `outbox_app_idx` ON `outbox` (`app`,`id`);--> statement-breakpoint
CREATE TABLE `outbox_cursors` (
	`name` text PRIMARY KEY NOT NULL,
	`last_id` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `outbox_retries` (
	`event_id` integer NOT NULL,
	`consequence` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`next_attempt_at` integer,
	`last_error` text,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`event_id`, `consequence`)
);
--> statement-breakpoint
CREATE INDEX `outbox_retries_due_idx` ON `outbox_retries` (`next_attempt_at`);--> statement-breakpoint
ALTER TABLE `agents` ADD `online` integer DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `deployments` ADD `consequence_error` text;