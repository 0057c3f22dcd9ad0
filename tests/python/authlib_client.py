"""A real third-party OAuth 2.0 client (Authlib's requests integration) against khoa.

Driven by crates/khoa-server/tests/api/third_party.rs, which starts khoa, seeds the clients
and the user, and asserts on the JSON this prints. The script finds every endpoint through
discovery (RFC 8414) and does nothing khoa-specific: if khoa were not standard, Authlib would
fail here.

Usage: authlib_client.py ISSUER CLIENT_ID CLIENT_SECRET USERNAME PASSWORD
"""

import json
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session


def main() -> None:
    issuer, client_id, client_secret, username, password = sys.argv[1:6]
    metadata = requests.get(
        f"{issuer}/.well-known/oauth-authorization-server", timeout=10
    ).json()
    token_endpoint = metadata["token_endpoint"]
    out = {"metadata_issuer": metadata["issuer"]}

    client = OAuth2Session(
        client_id,
        client_secret,
        scope="read offline_access",
        token_endpoint_auth_method="client_secret_basic",
    )

    # RFC 6749 §4.3: the password grant.
    token = client.fetch_token(
        token_endpoint, grant_type="password", username=username, password=password
    )
    out["password"] = {
        "token_type": token["token_type"],
        "has_refresh_token": "refresh_token" in token,
        "expires_in": token["expires_in"],
        "scope": token["scope"],
    }
    first_access = token["access_token"]
    first_refresh = token["refresh_token"]

    # RFC 6749 §6: refresh, which khoa rotates.
    refreshed = client.refresh_token(token_endpoint, refresh_token=first_refresh)
    out["refresh"] = {
        "rotated": refreshed["refresh_token"] != first_refresh,
        "new_access": refreshed["access_token"] != first_access,
    }

    # RFC 7662: introspection of the live and the spent refresh token.
    introspection = metadata["introspection_endpoint"]
    live = client.introspect_token(introspection, token=refreshed["access_token"]).json()
    spent = client.introspect_token(
        introspection, token=first_refresh, token_type_hint="refresh_token"
    ).json()
    out["introspect_live"] = live
    out["introspect_spent"] = spent

    # RFC 7009: revocation of the new refresh token, then introspection says it is gone.
    revocation = metadata["revocation_endpoint"]
    revoked = client.revoke_token(
        revocation, token=refreshed["refresh_token"], token_type_hint="refresh_token"
    )
    out["revoke_status"] = revoked.status_code
    out["introspect_revoked"] = client.introspect_token(
        introspection, token=refreshed["refresh_token"]
    ).json()

    # RFC 6749 §4.4: client credentials, with the secret in the body this time.
    service = OAuth2Session(
        client_id, client_secret, token_endpoint_auth_method="client_secret_post"
    )
    cc = service.fetch_token(token_endpoint, grant_type="client_credentials")
    out["client_credentials"] = {
        "token_type": cc["token_type"],
        "has_refresh_token": "refresh_token" in cc,
        "introspect": service.introspect_token(
            introspection, token=cc["access_token"]
        ).json(),
    }

    print(json.dumps(out))


if __name__ == "__main__":
    main()
