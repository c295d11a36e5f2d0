CREATE TABLE `run_results` (
	`job_id` text PRIMARY KEY NOT NULL,
	`path` text NOT NULL,
	`content` blob NOT NULL,
	`size` integer NOT NULL,
	`truncated` integer NOT NULL,
	`stored_at` integer NOT NULL,
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `runs` (
	`id` text PRIMARY KEY NOT NULL,
	`app` text NOT NULL,
	`schedule` text,
	`tick_at` integer,
	`trigger` text NOT NULL,
	`state` text NOT NULL,
	`reason` text,
	`command` text NOT NULL,
	`job_id` text,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `runs_tick_idx` ON `runs` (`app`,`schedule`,`tick_at`);--> statement-breakpoint
CREATE INDEX `runs_history_idx` ON `runs` (`app`,`schedule`,`id`);--> statement-breakpoint
CREATE INDEX `runs_job_idx` ON `runs` (`job_id`);--> statement-breakpoint
CREATE TABLE `schedules` (
	`key` text PRIMARY KEY NOT NULL,
	`app` text NOT NULL,
	`name` text NOT NULL,
	`paused` integer DEFAULT false NOT NULL,
	`cursor_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
