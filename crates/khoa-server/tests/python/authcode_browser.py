#!/usr/bin/env python3
"""Drives the authorization code + PKCE flow in headless Chromium (RFC 6749 §4.1, RFC 7636).

Opens the authorize URL, fills the login form, follows the redirect to the client's
redirect URI, exchanges the code with the verifier at the token endpoint, and prints one JSON
object with what it saw. A missing browser or driver is an error (exit 1), never a skip.

Usage: authcode_browser.py --base http://127.0.0.1:PORT --client-id ID --redirect-uri URI
                           --username NAME --password SECRET
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def pkce_pair():
    # RFC 7636 §4.1: 43-128 unreserved characters; §4.2: S256.
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


def browser(profile_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile_dir}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def exchange(base, client_id, code, redirect_uri, verifier):
    body = urllib.parse.urlencode(
        {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
    ).encode()
    request = urllib.request.Request(
        base + "/connect/token",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def main():
    parser = argparse.ArgumentParser()
    for name in ("--base", "--client-id", "--redirect-uri", "--username", "--password"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()

    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            fail(f"{path} is missing: install Debian's chromium and chromium-driver")
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError as e:
        fail(f"selenium is missing: {e}")

    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": args.client_id,
            "redirect_uri": args.redirect_uri,
            "scope": "openid read",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "ui_locales": "en",
        }
    )
    profile = tempfile.mkdtemp(prefix="khoa-chromium-")
    driver = None
    try:
        driver = browser(profile)
        driver.set_page_load_timeout(20)
        driver.get(f"{args.base}/connect/authorize?{query}")
        page_lang = driver.find_element(By.TAG_NAME, "html").get_attribute("lang")
        # Fill the fields through their labels, as assistive technology finds them.
        label = driver.find_element(By.CSS_SELECTOR, "label[for=username]").text
        driver.find_element(By.ID, "username").send_keys(args.username)
        driver.find_element(By.ID, "password").send_keys(args.password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 20).until(lambda d: d.current_url.startswith(args.redirect_uri))
        landed = driver.current_url
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

    returned = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(landed).query))
    if "code" not in returned:
        fail(f"no code in the redirect: {returned}")
    status, tokens = exchange(args.base, args.client_id, returned["code"], args.redirect_uri, verifier)
    print(
        json.dumps(
            {
                "page_lang": page_lang,
                "username_label": label,
                "state_sent": state,
                "state_returned": returned.get("state"),
                "iss": returned.get("iss"),
                "nonce": nonce,
                "token_status": status,
                "tokens": tokens,
            }
        )
    )


if __name__ == "__main__":
    main()
