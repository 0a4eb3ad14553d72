DROP TABLE page_updates;
