"""Session fixture: a throwaway PostgreSQL cluster + a carto-sim serving it, both torn down at the end.

Environment:
  CARTO_SIM_BIN      the carto-sim binary (default $CARGO_TARGET_DIR/debug/carto-sim,
                     CARGO_TARGET_DIR defaulting to /root/.cache/carto_fdw/target)
  FIDELITY_KEEP=1    keep the cluster directory and the sim's log after the run (printed at the end)
"""
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", "/root/.cache/carto_fdw/target")
SIM_BIN = os.environ.get("CARTO_SIM_BIN", os.path.join(TARGET, "debug", "carto-sim"))

PREFIX = "fid"
DEMO_KEY = "demo-master-key-0123456789"
DEMO_READER_KEY = "demo-reader-key-0123456789"
DEMO_WRITER_KEY = "demo-writer-key-0123456789"
DEMO_MAPS_KEY = "demo-maps-key-0123456789"      # a regular key without the SQL grant (maps only)
FREE_KEY = "free-master-key-0123456789"
ALICE_KEY = "alice-master-key-0123456789"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sim:
    """What the tests need to know about the running sim."""

    def __init__(self, port, pg_port, log_path, workdir):
        self.port = port
        self.pg_port = pg_port
        self.log_path = log_path
        self.workdir = workdir
        self.origin = f"http://127.0.0.1:{port}"

    # --- addresses
    def base_url(self, user="demo"):
        """carto-python's base_url."""
        return f"{self.origin}/user/{user}/"

    def sql_url(self, user="demo"):
        """GDAL's CARTO_API_URL, curl's endpoint."""
        return f"{self.origin}/user/{user}/api/v2/sql"

    # --- direct database access (superuser), to check what really arrived
    def dbname(self, user="demo", org=None):
        return f"{PREFIX}_org_{org}" if org else f"{PREFIX}_{user}"

    def psql(self, sql, user="demo", org=None, check=True):
        """Run SQL as superuser in the user's database; returns stdout (unaligned, tuples only, tab-separated)."""
        p = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
             f"host=127.0.0.1 port={self.pg_port} user=postgres dbname={self.dbname(user, org)}", "-c", sql],
            capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"psql failed: {p.stderr}")
        return p.stdout

    def pg_conninfo(self, dbname):
        return f"host=127.0.0.1 port={self.pg_port} user=postgres dbname={dbname}"

    def psql_db(self, dbname, sql):
        """Run SQL as superuser in any database of the cluster."""
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", self.pg_conninfo(dbname),
                            "-c", sql], capture_output=True, text=True)
        if p.returncode != 0:
            raise AssertionError(f"psql failed: {p.stderr}")
        return p.stdout

    def copy_out(self, sql, user="demo", org=None):
        """Bytes of `COPY (...) TO STDOUT ...` as PostgreSQL itself writes them."""
        p = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
             f"host=127.0.0.1 port={self.pg_port} user=postgres dbname={self.dbname(user, org)}", "-c", sql],
            capture_output=True)
        if p.returncode != 0:
            raise AssertionError(f"psql failed: {p.stderr.decode()}")
        return p.stdout

    # --- admin API (request log)
    def admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.origin + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return json.loads(text) if text.strip() else None

    def requests_log(self):
        """The sim's request log: a list of entries {method, path, group, user, status, bytes_in, ...}."""
        out = self.admin("GET", "/_sim/log")
        if isinstance(out, dict):
            out = out.get("requests", out.get("entries", []))
        return out

    def clear_log(self):
        self.admin("DELETE", "/_sim/log")

    def set_limits(self, **limits):
        return self.admin("POST", "/_sim/limits", limits)

    def add_fault(self, **spec):
        return self.admin("POST", "/_sim/faults", spec)

    def clear_faults(self):
        self.admin("DELETE", "/_sim/faults")

    def log_tail(self, n=60):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


CONFIG = """\
listen = "127.0.0.1:{port}"
admin_url = "host=127.0.0.1 port={pg_port} user=postgres dbname=postgres"
prefix = "{prefix}"

[admin]
enabled = true

[[users]]
name = "demo"
plan = "unlimited"
master_key = "{demo_key}"
setup_sql = '''
CREATE TABLE reader_table (cartodb_id serial PRIMARY KEY, name text);
INSERT INTO reader_table (name) VALUES ('visible');
CREATE TABLE writer_table (cartodb_id serial PRIMARY KEY, the_geom geometry(Point,4326),
                           the_geom_webmercator geometry(Point,3857), name text, n integer);
SELECT CDB_CartodbfyTable('writer_table');
'''

[[users.keys]]
name = "reader"
token = "{reader_key}"
grants = [{{ table = "reader_table", privileges = ["select"] }}]

[[users.keys]]
name = "writer"
token = "{writer_key}"
grants = [{{ table = "writer_table", privileges = ["select", "insert", "update"] }}]

[[users.keys]]
name = "maps"
token = "{maps_key}"
sql = false

[[users]]
name = "freebie"
plan = "free"
master_key = "{free_key}"

[[organizations]]
name = "acme"

[[organizations.members]]
name = "alice"
plan = "unlimited"
master_key = "{alice_key}"
"""


@pytest.fixture(scope="session")
def sim():
    if not os.access(SIM_BIN, os.X_OK):
        pytest.fail(f"carto-sim binary not found at {SIM_BIN} (run tests/fidelity/run, which builds it)")
    workdir = tempfile.mkdtemp(prefix="fidelity-")
    os.chmod(workdir, 0o755)
    pg_dir = os.path.join(workdir, "pg")
    pg_port = free_port()
    subprocess.run([os.path.join(ROOT, "scripts", "pg-cluster"), "start", pg_dir, str(pg_port)], check=True)
    serve = None
    log_path = os.path.join(workdir, "carto-sim.log")
    try:
        port = free_port()
        cfg_path = os.path.join(workdir, "sim.toml")
        with open(cfg_path, "w") as f:
            f.write(CONFIG.format(port=port, pg_port=pg_port, prefix=PREFIX, demo_key=DEMO_KEY,
                                  reader_key=DEMO_READER_KEY, writer_key=DEMO_WRITER_KEY, maps_key=DEMO_MAPS_KEY, free_key=FREE_KEY, alice_key=ALICE_KEY))
        with open(log_path, "ab") as log:
            p = subprocess.run([SIM_BIN, "setup", "--config", cfg_path], stdout=log, stderr=subprocess.STDOUT,
                               timeout=600)
        if p.returncode != 0:
            with open(log_path, errors="replace") as f:
                pytest.fail(f"carto-sim setup failed (exit {p.returncode}):\n{f.read()[-4000:]}")
        log = open(log_path, "ab")
        serve = subprocess.Popen([SIM_BIN, "serve", "--config", cfg_path], stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        deadline = time.time() + 60
        actual = None
        while time.time() < deadline and actual is None:
            if serve.poll() is not None:
                break
            with open(log_path, errors="replace") as f:
                m = re.search(r"carto-sim listening on http://127\.0\.0\.1:(\d+)", f.read())
            if m:
                actual = int(m.group(1))
            else:
                time.sleep(0.1)
        if actual is None:
            with open(log_path, errors="replace") as f:
                pytest.fail(f"carto-sim serve did not start:\n{f.read()[-4000:]}")
        s = Sim(actual, pg_port, log_path, workdir)
        yield s
    finally:
        if serve is not None and serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(10)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        subprocess.run([os.path.join(ROOT, "scripts", "pg-cluster"), "stop", pg_dir])
        if os.environ.get("FIDELITY_KEEP") == "1":
            print(f"\nfidelity: kept {workdir} (sim log: {log_path})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


_names = itertools.count(1)


@pytest.fixture
def unique():
    """A fresh lowercase table name per test."""
    return f"fid_t{next(_names)}"
