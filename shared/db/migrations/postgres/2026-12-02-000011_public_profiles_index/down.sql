DROP INDEX users_public_username_idx;
