//! The tables, as diesel sees them. Kept in step with `migrations/` by the
//! `schema_matches_migrations` tests, which load every column on both backends.

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        username -> Nullable<Text>,
        display_name -> Nullable<Text>,
        bio -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        role -> Text,
        is_public -> Integer,
        email_verified_at -> Nullable<Timestamp>,
        disabled_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    email_tokens (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        purpose -> Text,
        email -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    jobs (id) {
        id -> BigInt,
        kind -> Text,
        payload -> Text,
        idempotency_key -> Text,
        run_after -> Timestamp,
        attempts -> Integer,
        max_attempts -> Integer,
        locked_until -> Nullable<Timestamp>,
        locked_by -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        done_at -> Nullable<Timestamp>,
        dead_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(email_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, email_tokens, jobs);
