CREATE TABLE `deployments` (
	`id` text PRIMARY KEY NOT NULL,
	`app` text NOT NULL,
	`ref` text,
	`sha` text,
	`image` text,
	`hosts` text NOT NULL,
	`trigger` text NOT NULL,
	`triggered_by` text,
	`release_id` text,
	`build_job_id` text,
	`status` text NOT NULL,
	`error` text,
	`created_at` integer NOT NULL,
	`finished_at` integer
);
--> statement-breakpoint
CREATE INDEX `deployments_app_idx` ON `deployments` (`app`,`id`);--> statement-breakpoint
CREATE TABLE `releases` (
	`id` text PRIMARY KEY NOT NULL,
	`app` text NOT NULL,
	`version` text NOT NULL,
	`sha` text,
	`image_tag` text,
	`digest` text,
	`config` text NOT NULL,
	`status` text NOT NULL,
	`build_job_id` text,
	`trigger` text NOT NULL,
	`triggered_by` text,
	`created_at` integer NOT NULL,
	`built_at` integer
);
--> statement-breakpoint
CREATE INDEX `releases_app_idx` ON `releases` (`app`,`id`);--> statement-breakpoint
CREATE TABLE `secrets` (
	`app` text NOT NULL,
	`key` text NOT NULL,
	`value` text NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`app`, `key`)
);
--> statement-breakpoint
CREATE TABLE `webhook_deliveries` (
	`delivery_id` text PRIMARY KEY NOT NULL,
	`event` text NOT NULL,
	`repo` text,
	`ref` text,
	`sha` text,
	`outcome` text NOT NULL,
	`reason` text NOT NULL,
	`deployment_id` text,
	`received_at` integer NOT NULL
);
