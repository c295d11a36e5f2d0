CREATE TABLE `agent_update_slots` (
	`slot` integer PRIMARY KEY NOT NULL,
	`agent_id` text NOT NULL,
	`version` text NOT NULL,
	`offered_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `agent_update_slots_agent_id_unique` ON `agent_update_slots` (`agent_id`);