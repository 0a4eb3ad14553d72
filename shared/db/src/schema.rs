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
