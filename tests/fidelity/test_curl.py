"""curl, used as CARTO's documentation shows (see curl_roundtrip.sh), against carto-sim."""
import os
import subprocess

from conftest import DEMO_KEY

HERE = os.path.dirname(os.path.abspath(__file__))


def test_curl_gzip_copyfrom_copyto_byte_exact_round_trip(sim, tmp_path):
    env = dict(os.environ, SQL_URL=sim.sql_url("demo"), API_KEY=DEMO_KEY, USER_NAME="demo")
    p = subprocess.run([os.path.join(HERE, "curl_roundtrip.sh"), str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    assert p.stdout.rstrip().endswith("curl round trip: OK")
