"""The front door: credentials (API keys, OIDC tokens against a real JWKS
served on loopback), permissions, per-client event ids, rate limits."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from api.app import create_app
from api.auth import presented
from api.credentials import KeyFileError, KeyRing, Principal, add_key, key_hash, parse_keys, remove_key
from api.cursor import CursorCodec
from api.limits import RateLimiter
from api.tokens import InvalidToken, TokenVerifier
from producer.kinesis_writer import KinesisWriter
from retail_stream.retries import Backoff
from retail_stream.schema import CSV_COLUMNS, decode, event_id
from retail_stream.settings import Settings
from tests.support.api_fakes import FakeDynamoDB, customer_records, door_with_keys
from tests.support.kinesis_fakes import FakeKinesis

GOOD = dict(zip(CSV_COLUMNS, "536365,85123A,HEART,6,12/1/2010 8:26,2.55,17850.0,United Kingdom".split(",")))
ROUTES = [("POST", "/transactions"), ("GET", "/customers/17850/transactions"), ("GET", "/invoices/536365"),
          ("GET", "/schema/openapi.json")]
ISSUER = "https://issuer.example"


class Api:
    def __init__(self, *, rate=1000.0, burst=1000, clock=None, tokens=None, dynamodb=None):
        self.kinesis = FakeKinesis()
        self.door, self.keys = door_with_keys(CollectorRegistry(), rate=rate, burst=burst, clock=clock, tokens=tokens)
        writer = KinesisWriter(self.kinesis, "retail", backoff=Backoff(0, 0, attempts=3), sleep=lambda s: None)
        self.app = create_app(Settings(), writer, dynamodb or FakeDynamoDB(customer_records(3)), self.door,
                              cursors=CursorCodec("test"))

    def client(self) -> TestClient:
        return TestClient(self.app)

    def stored(self):
        return [decode(data) for data, _ in self.kinesis.stored]

    def metric(self, text: str) -> bool:
        return text in generate_latest(self.door.metrics.registry).decode()


def call(client, method, path, headers=None):
    if method == "POST":
        return client.post(path, content=json.dumps(GOOD), params={"source": "feed.csv"},
                           headers={"Content-Type": "application/json", **(headers or {})})
    return client.get(path, headers=headers or {})


# --- 401 and 403 ---------------------------------------------------------------


@pytest.mark.parametrize("method, path", ROUTES)
@pytest.mark.parametrize("headers", [None, {"X-API-Key": "rsk_not-a-key"}, {"Authorization": "Bearer rsk_nope"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer a.b.c"}])
def test_every_route_but_health_refuses_a_missing_or_bad_credential(method, path, headers):
    api = Api()
    with api.client() as client:
        response = call(client, method, path, headers)
        assert client.get("/healthz").status_code == 200
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status_code"] == 401
    assert api.stored() == []


@pytest.mark.parametrize("name, method, path, status", [
    ("reader", "POST", "/transactions", 403),
    ("reader", "GET", "/invoices/536365", 404),  # allowed: no such invoice in the fake
    ("writer", "GET", "/customers/17850/transactions", 403),
    ("writer", "GET", "/invoices/536365", 403),
    ("writer", "POST", "/transactions", 202),
])
def test_a_credential_without_the_routes_permission_is_403(name, method, path, status):
    api = Api()
    with api.client() as client:
        response = call(client, method, path, {"X-API-Key": api.keys[name]})
    assert response.status_code == status, response.text
    if status == 403:
        assert "permission" in response.json()["detail"] and name in response.json()["detail"]


def test_a_key_goes_as_x_api_key_or_as_a_bearer_token():
    api = Api()
    with api.client() as client:
        assert call(client, "GET", "/customers/17850/transactions", {"X-API-Key": api.keys["reader"]}).status_code == 200
        bearer = {"Authorization": f"Bearer {api.keys['reader']}"}
        assert call(client, "GET", "/customers/17850/transactions", bearer).status_code == 200
    assert presented({"authorization": "bearer  eyJ.x.y "}) == (None, "eyJ.x.y")
    assert presented({"x-api-key": "k", "authorization": "Bearer rsk_b"}) == ("k", "rsk_b")


def test_refusals_are_counted_and_no_key_is_logged(capsys):
    api = Api()
    secret = "rsk_" + "s" * 40
    with api.client() as client:
        call(client, "GET", "/invoices/1", {"X-API-Key": secret})
        call(client, "GET", "/invoices/1")
        call(client, "GET", "/invoices/1", {"X-API-Key": api.keys["tester"]})
    assert api.metric('retail_api_auth_failures_total{reason="unknown_key"} 1.0')
    assert api.metric('retail_api_auth_failures_total{reason="missing"} 1.0')
    logged = capsys.readouterr()
    assert secret not in logged.out + logged.err and api.keys["tester"] not in logged.out + logged.err


# --- event ids bound to the client --------------------------------------------


def test_two_clients_sending_the_same_source_and_line_write_two_records():
    api = Api()
    with api.client() as client:
        for name in ("tester", "other", "tester"):
            assert call(client, "POST", "/transactions", {"X-API-Key": api.keys[name]}).status_code == 202
    stored = api.stored()
    assert [r.source for r in stored] == ["tester/feed.csv", "other/feed.csv", "tester/feed.csv"]
    assert len({r.event_id for r in stored}) == 2  # the repeat is the same record again
    assert stored[0].event_id == stored[2].event_id == event_id("tester/feed.csv", 1)


def test_a_client_cannot_write_another_clients_event_ids():
    """"other" names tester's source outright: its rows still land in its own namespace."""
    api = Api()
    with api.client() as client:
        call(client, "POST", "/transactions", {"X-API-Key": api.keys["tester"]})
        forged = client.post("/transactions", content=json.dumps(GOOD), params={"source": "tester/feed.csv"},
                             headers={"Content-Type": "application/json", "X-API-Key": api.keys["other"]})
    assert forged.status_code == 202
    real, fake = api.stored()
    assert fake.source == "other/tester/feed.csv" and fake.event_id != real.event_id
    assert forged.json()["results"][0]["event_id"] == event_id("other/tester/feed.csv", 1)


def test_a_producer_ids_key_writes_the_producers_own_ids():
    api = Api()
    with api.client() as client:
        response = call(client, "POST", "/transactions", {"X-API-Key": api.keys["replay"]})
    assert response.json()["source"] == "feed.csv"
    assert api.stored()[0].event_id == event_id("feed.csv", 1)


def test_a_source_too_long_once_namespaced_is_400():
    api = Api()
    with api.client() as client:
        response = client.post("/transactions", content=json.dumps(GOOD), params={"source": "x" * 250},
                               headers={"Content-Type": "application/json", "X-API-Key": api.keys["tester"]})
    assert response.status_code == 400 and "at most 248 characters" in response.json()["detail"]


# --- rate limits ----------------------------------------------------------------


def test_a_caller_over_its_rate_gets_429_with_retry_after_and_others_do_not():
    now = [100.0]
    api = Api(rate=0.5, burst=2, clock=lambda: now[0])
    with api.client() as client:
        reader = {"X-API-Key": api.keys["reader"]}
        statuses = [call(client, "GET", "/customers/17850/transactions", reader).status_code for _ in range(3)]
        limited = call(client, "GET", "/customers/17850/transactions", reader)
        other = call(client, "GET", "/customers/17850/transactions", {"X-API-Key": api.keys["tester"]})
        now[0] += 2  # one token back at 0.5 per second
        again = call(client, "GET", "/customers/17850/transactions", reader)
    assert statuses == [200, 200, 429]
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert other.status_code == 200 and again.status_code == 200
    assert api.metric('retail_api_rate_limited_total{kind="key"} 2.0')


def test_the_rate_limiter_refills_and_forgets_the_oldest_callers():
    now = [0.0]
    limiter = RateLimiter(rate=10, burst=1, clock=lambda: now[0], max_callers=2)
    assert limiter.wait_seconds("a") == 0 and limiter.wait_seconds("a") == 1
    now[0] += 0.1
    assert limiter.wait_seconds("a") == 0
    limiter.wait_seconds("b")
    limiter.wait_seconds("c")
    assert set(limiter._buckets) == {"b", "c"}


# --- the key document -----------------------------------------------------------


def test_keys_are_stored_as_hashes_and_revocation_takes_effect_on_reload():
    text, key = add_key("", "svc", ["ingest"])
    assert key not in text and key_hash(key) in text
    document = {"text": text}
    now = [0.0]
    ring = KeyRing({"doc": lambda: document["text"]}, reload_seconds=30, clock=lambda: now[0], background=False)
    ring.load()
    assert ring.lookup(key) == Principal("svc", "svc", frozenset({"ingest"}))
    document["text"] = remove_key(text, "svc")
    now[0] += 29
    assert ring.lookup(key) is not None  # not re-read yet
    now[0] += 2
    assert ring.lookup(key) is None


def test_a_key_document_that_breaks_keeps_the_keys_in_force():
    text, key = add_key("", "svc", ["read"])
    document = {"text": text}
    now = [0.0]
    ring = KeyRing({"doc": lambda: document["text"]}, reload_seconds=1, clock=lambda: now[0], background=False)
    ring.load()
    document["text"] = "{not json"
    now[0] += 5
    assert ring.lookup(key) is not None


@pytest.mark.parametrize("entry, problem", [
    ({"name": "a/b", "sha256": "0" * 64, "permissions": ["read"]}, "name must match"),
    ({"name": "a", "sha256": "zz", "permissions": ["read"]}, "sha256"),
    ({"name": "a", "sha256": "0" * 64, "permissions": ["admin"]}, "permissions"),
    ({"name": "a", "sha256": "0" * 64, "permissions": []}, "permissions"),
    ({"name": "a", "sha256": "0" * 64, "permissions": ["read"], "client": "x:y"}, "client"),
    ({"name": "a", "sha256": "0" * 64, "permissions": ["read"], "producer_ids": "yes"}, "producer_ids"),
])
def test_a_bad_key_entry_is_refused_by_name(entry, problem):
    with pytest.raises(KeyFileError, match=problem):
        parse_keys(json.dumps({"keys": [entry]}))
    with pytest.raises(KeyFileError, match="twice"):
        parse_keys(json.dumps({"keys": [{"name": "a", "sha256": "0" * 64, "permissions": ["read"]},
                                        {"name": "a", "sha256": "1" * 64, "permissions": ["read"]}]}))


# --- OIDC tokens against a JWKS on loopback ------------------------------------


@pytest.fixture(scope="module")
def issuer():
    """An RSA key, and its JWKS served over HTTP on 127.0.0.1 as a provider serves it."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwks = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()
    fetched = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            fetched.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"

    def token(kid="k1", key=private, **claims):
        now = int(time.time())
        body = {"iss": ISSUER, "sub": "svc-1", "aud": "retail-api", "iat": now, "exp": now + 300,
                "scope": "retail-api/ingest retail-api/read", **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="RS256",
                          headers={"kid": kid})

    yield url, token, fetched
    server.shutdown()


def verifier(url, **kwargs):
    return TokenVerifier(ISSUER, "retail-api", jwks_url=url, scope_prefix="retail-api/", **kwargs)


def test_a_valid_token_names_its_client_and_permissions(issuer):
    url, token, _ = issuer
    principal = verifier(url).principal(token())
    assert principal == Principal("oidc:svc-1", "oidc:svc-1", frozenset({"ingest", "read"}), kind="token")
    assert verifier(url).principal(token(scope="retail-api/read other")).permissions == {"read"}
    # A Cognito access token: no aud, the app client in client_id.
    assert verifier(url).principal(token(aud=None, client_id="retail-api")).client == "oidc:svc-1"
    # Several app clients (API_JWT_AUDIENCE="a,b"): each is taken.
    several = TokenVerifier(ISSUER, "other-client, retail-api", jwks_url=url)
    assert several.principal(token(aud=None, client_id="other-client")).kind == "token"


@pytest.mark.parametrize("claims, reason", [
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"iss": "https://elsewhere.example"}, "issuer"),
    ({"aud": "another-api"}, "not issued for this API"),
    ({"aud": None, "client_id": "another-client"}, "not issued for this API"),
    ({"sub": "has/slash"}, "cannot name a client"),
    ({"iat": None}, "iat"),
])
def test_a_token_that_is_not_for_us_is_refused(issuer, claims, reason):
    url, token, _ = issuer
    with pytest.raises(InvalidToken, match=reason):
        verifier(url).principal(token(**claims))


def test_a_token_signed_by_another_key_or_with_none_is_refused(issuer):
    url, token, _ = issuer
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken, match="Signature"):
        verifier(url).principal(token(key=stranger))
    with pytest.raises(InvalidToken):
        verifier(url).principal(token(kid="unknown"))
    unsigned = jwt.encode({"iss": ISSUER, "sub": "x", "aud": "retail-api"}, None, algorithm="none")
    with pytest.raises(InvalidToken):
        verifier(url).principal(unsigned)


def test_tokens_through_the_app(issuer):
    url, token, _ = issuer
    api = Api(tokens=verifier(url))
    with api.client() as client:
        posted = call(client, "POST", "/transactions", {"Authorization": f"Bearer {token()}"})
        read_only = call(client, "POST", "/transactions", {"Authorization": f"Bearer {token(scope='retail-api/read')}"})
        expired = call(client, "GET", "/invoices/1", {"Authorization": f"Bearer {token(exp=int(time.time()) - 900)}"})
    assert posted.status_code == 202 and posted.json()["source"] == "oidc:svc-1/feed.csv"
    assert read_only.status_code == 403
    assert expired.status_code == 401 and 'error="invalid_token"' in expired.headers["www-authenticate"]


# --- cursors through the app ----------------------------------------------------


def test_an_expired_cursor_is_400_and_says_so():
    now = [1_000_000.0]
    api = Api()
    codec = CursorCodec("test", ttl_seconds=60, clock=lambda: now[0])
    writer = KinesisWriter(FakeKinesis(), "retail", backoff=Backoff(0, 0, attempts=1), sleep=lambda s: None)
    app = create_app(Settings(), writer, FakeDynamoDB(customer_records(3)), api.door, cursors=codec)
    with TestClient(app) as client:
        client.headers["X-API-Key"] = api.keys["reader"]
        first = client.get("/customers/17850/transactions", params={"limit": 1}).json()
        now[0] += 61
        late = client.get("/customers/17850/transactions", params={"limit": 1, "cursor": first["next_cursor"]})
    assert late.status_code == 400 and "expired" in late.json()["detail"]



# --- found in review -------------------------------------------------------------


def test_a_token_naming_another_algorithm_for_the_key_is_a_401_not_a_500(issuer):
    url, token, _ = issuer
    _, payload, signature = token().split(".")
    forged = base64.urlsafe_b64encode(b'{"alg":"ES256","kid":"k1","typ":"JWT"}').rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        verifier(url).principal(f"{forged}.{payload}.{signature}")
    api = Api(tokens=verifier(url))
    with api.client() as client:
        response = client.get("/invoices/1", headers={"Authorization": f"Bearer {forged}.{payload}.{signature}"})
    assert response.status_code == 401
    with pytest.raises(InvalidToken, match="not issued for this API"):
        verifier(url).principal(token(aud=[{}]))


def test_a_producer_ids_key_cannot_name_a_clients_namespace():
    api = Api()
    with api.client() as client:
        response = client.post("/transactions", content=json.dumps(GOOD), params={"source": "tester/feed.csv"},
                               headers={"Content-Type": "application/json", "X-API-Key": api.keys["replay"]})
    assert response.status_code == 400 and "namespace" in response.json()["detail"]
    assert api.stored() == []


def test_a_short_cursor_secret_is_refused_without_being_shown():
    from retail_stream.settings import SettingsError

    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"API_CURSOR_SECRET": "short-secret"})
    assert "short-secret" not in str(refused.value) and "API_CURSOR_SECRET" in str(refused.value)


def test_editing_a_key_file_keeps_its_mode_and_a_new_dev_key_keeps_the_other_keys(tmp_path):
    from api.keys_cli import main as keys_cli
    from local_stack.api_keys import ensure_dev_key

    keys_file = tmp_path / "api-keys.json"
    assert keys_cli(["create", "--name", "a", "--file", str(keys_file)]) == 0
    keys_file.chmod(0o640)
    assert keys_cli(["create", "--name", "b", "--file", str(keys_file)]) == 0
    assert keys_cli(["revoke", "--name", "a", "--file", str(keys_file)]) == 0
    assert oct(keys_file.stat().st_mode & 0o777) == "0o640"
    _, dev = ensure_dev_key(tmp_path)  # no dev-api-key yet: the dev key joins b
    names = {p.name for p in parse_keys(keys_file.read_text()).values()}
    assert names == {"b", "dev"} and ensure_dev_key(tmp_path)[1] == dev
