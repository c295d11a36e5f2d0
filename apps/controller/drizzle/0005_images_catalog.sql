CREATE TABLE `images` (
	`id` text PRIMARY KEY NOT NULL,
	`app` text NOT NULL,
	`tag` text NOT NULL,
	`ref` text NOT NULL,
	`sha` text,
	`repository` text NOT NULL,
	`digest` text,
	`status` text NOT NULL,
	`error` text,
	`build_job_id` text,
	`builds` integer DEFAULT 1 NOT NULL,
	`created_at` integer NOT NULL,
	`started_at` integer,
	`finished_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `images_app_tag_idx` ON `images` (`app`,`tag`);--> statement-breakpoint
CREATE INDEX `images_build_job_idx` ON `images` (`build_job_id`);