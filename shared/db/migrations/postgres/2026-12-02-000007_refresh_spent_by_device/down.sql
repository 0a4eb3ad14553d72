ALTER TABLE refresh_tokens DROP COLUMN spent_by_device;
