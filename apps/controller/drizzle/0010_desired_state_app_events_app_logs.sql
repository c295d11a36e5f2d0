CREATE TABLE `app_events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`agent_id` text NOT NULL,
	`seq` integer NOT NULL,
	`host` text NOT NULL,
	`app` text NOT NULL,
	`kind` text NOT NULL,
	`reason` text NOT NULL,
	`container` text,
	`exit_code` integer,
	`at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `app_events_agent_seq_idx` ON `app_events` (`agent_id`,`seq`);--> statement-breakpoint
CREATE INDEX `app_events_app_idx` ON `app_events` (`app`,`id`);--> statement-breakpoint
CREATE TABLE `app_logs` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`host` text NOT NULL,
	`app` text NOT NULL,
	`container` text NOT NULL,
	`ts` text NOT NULL,
	`stream` text NOT NULL,
	`line` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `app_logs_app_idx` ON `app_logs` (`app`,`host`,`id`);--> statement-breakpoint
CREATE TABLE `app_states` (
	`app` text NOT NULL,
	`host` text NOT NULL,
	`release_id` text,
	`image` text,
	`run` text,
	`route` text,
	`replicas` integer DEFAULT 1 NOT NULL,
	`state` text DEFAULT 'running' NOT NULL,
	`job_id` text,
	`version` integer NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`app`, `host`)
);
--> statement-breakpoint
CREATE INDEX `app_states_host_version_idx` ON `app_states` (`host`,`version`);--> statement-breakpoint
ALTER TABLE `agents` ADD `app_status` text DEFAULT '[]' NOT NULL;--> statement-breakpoint
ALTER TABLE `agents` ADD `app_log_offset` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
-- Upgrade in place: every app keeps running where its last deploy succeeded. Without this, the
-- first desired state an agent receives would name only the next app deployed, and reconcile
-- would remove the containers of every other app on the host.
INSERT INTO `app_states` (`app`, `host`, `release_id`, `image`, `run`, `route`, `replicas`, `state`, `job_id`, `version`, `updated_at`)
SELECT j.`app`, j.`target_host`, json_extract(j.`spec`, '$.release'), json_extract(j.`result`, '$.image'), json_extract(j.`spec`, '$.run'),
       CASE WHEN json_array_length(j.`spec`, '$.domains') > 0 AND json_extract(j.`spec`, '$.proxy') IS NOT NULL
            THEN json_object('domains', json_extract(j.`spec`, '$.domains'), 'proxy', json_extract(j.`spec`, '$.proxy'), 'tls', coalesce(json_extract(j.`spec`, '$.tls'), 'auto')) END,
       coalesce(json_extract(j.`spec`, '$.replicas'), 1), 'running', j.`id`, ROW_NUMBER() OVER (ORDER BY j.`id`), coalesce(j.`finished_at`, j.`created_at`)
FROM `jobs` j
WHERE j.`kind` = 'deploy' AND j.`status` = 'succeeded' AND j.`target_host` IS NOT NULL
  AND j.`id` = (SELECT max(k.`id`) FROM `jobs` k WHERE k.`kind` = 'deploy' AND k.`status` = 'succeeded' AND k.`app` = j.`app` AND k.`target_host` = j.`target_host`);
