DROP TABLE passkey_challenges;
DROP TABLE passkeys;
DROP TABLE second_steps;
DROP TABLE recovery_codes;
DROP TABLE totp_factors;
