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
        deleted_at -> Nullable<Timestamp>,
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
        recipient -> Nullable<Text>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        csrf_token -> Text,
        user_agent -> Text,
        client_addr -> Text,
        created_at -> Timestamp,
        last_used_at -> Timestamp,
        idle_expires_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        revoked_reason -> Nullable<Text>,
        authenticated_at -> Nullable<Timestamp>,
        amr -> Text,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> Text,
        created_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        spent_by_device -> Nullable<Text>,
    }
}

diesel::table! {
    auth_events (id) {
        id -> BigInt,
        user_id -> Nullable<Text>,
        login_key -> Nullable<Text>,
        kind -> Text,
        session_id -> Nullable<Text>,
        client_addr -> Text,
        user_agent -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        created_at -> Timestamp,
        actor_id -> Nullable<Text>,
        actor -> Text,
        action -> Text,
        target_id -> Nullable<Text>,
        target -> Text,
        client_addr -> Text,
        request_id -> Text,
        detail -> Text,
    }
}

diesel::table! {
    page_builds (id) {
        id -> BigInt,
        host -> Text,
        version -> Text,
        started_at -> Timestamp,
        finished_at -> Timestamp,
        pages -> BigInt,
    }
}

diesel::table! {
    page_updates (host) {
        host -> Text,
        version -> Text,
        at -> Timestamp,
        duration_ms -> BigInt,
        changed -> BigInt,
    }
}

diesel::table! {
    totp_factors (user_id) {
        user_id -> Text,
        secret -> Text,
        last_step -> Nullable<BigInt>,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Text,
        code_hash -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    second_steps (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        login_key -> Text,
        password_check -> Text,
        failures -> Integer,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Text,
        user_id -> Text,
        credential_id -> Text,
        name -> Text,
        credential -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    passkey_challenges (token_hash) {
        token_hash -> Text,
        purpose -> Text,
        user_id -> Nullable<Text>,
        state -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(email_tokens -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(auth_events -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    email_tokens,
    jobs,
    sessions,
    refresh_tokens,
    auth_events,
    audit_log,
    page_builds,
    page_updates,
    totp_factors,
    recovery_codes,
    second_steps,
    passkeys,
    passkey_challenges
);
