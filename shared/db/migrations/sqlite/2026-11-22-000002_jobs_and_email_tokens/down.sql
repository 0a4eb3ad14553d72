DROP TABLE jobs;
DROP TABLE email_tokens;
