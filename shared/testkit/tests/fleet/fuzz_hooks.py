"""schemathesis hooks of the fleet's fuzz test (fuzz.rs beside this file).

Signed in: every request carries `Authorization: Bearer <access token>` of the account
the test made (FLOTILLA_FUZZ_EMAIL, FLOTILLA_FUZZ_PASSWORD), got from the fleet's own
`POST /login` through nginx (FLOTILLA_FUZZ_ORIGIN). A new one every minute (a token
lives 15 minutes, and admin's changes want a sign-in within FLOTILLA_ADMIN_REAUTH_SECS),
and at once after a 401, when schemathesis sends the request again with it: a case that
ended its own session (a sign-out, an admin's revoke-sessions) does not leave the rest
of the run signed out.

Kept out of reach (FLOTILLA_FUZZ_PROTECT, account ids separated by commas): a request
whose path names one of these accounts names an account that does not exist instead.
The run's own admin is one: the console's actions on real ids (found through links)
would otherwise demote, disable or delete it, and the rest of the run would test
nothing but 401 and 403.
"""

import os

import requests
import schemathesis

ORIGIN = os.environ["FLOTILLA_FUZZ_ORIGIN"]
EMAIL = os.environ["FLOTILLA_FUZZ_EMAIL"]
PASSWORD = os.environ["FLOTILLA_FUZZ_PASSWORD"]
PROTECTED = {i for i in os.environ.get("FLOTILLA_FUZZ_PROTECT", "").split(",") if i}
# Well formed, and no account's.
NOBODY = "00000000-0000-4000-8000-000000000000"


@schemathesis.auth(refresh_interval=60)
class SignIn:
    def get(self, case, context):
        response = requests.post(
            f"{ORIGIN}/login",
            json={"email": EMAIL, "password": PASSWORD},
            headers={"Accept": "application/json"},
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(f"sign-in as {EMAIL}: {response.status_code} {response.text}")
        return response.json()["access_token"]

    def set(self, case, token, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {token}"


@schemathesis.hook
def before_call(context, case, kwargs):
    # Every phase's cases, those of links included, pass here just before they are sent.
    for name, value in (case.path_parameters or {}).items():
        if str(value) in PROTECTED:
            case.path_parameters[name] = NOBODY
