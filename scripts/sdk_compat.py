"""The docker SDK's own integration tests (services, swarm, nodes) against a swarmkit-py cluster.

Compatibility measured from outside, with a client's own test suite (issue 12). Not part of the
default test suite: it downloads the SDK's source and runs a few hundred requests; run it with
`scripts/sdk-compat.sh` and read the summary it prints (and writes as JSON).

Where the tests come from: `DOCKER_PY_SRC` (a docker-py checkout or unpacked sdist holding
`tests/integration`), else the sdist of the installed SDK from PyPI (`pip download --no-binary`).
The sdists of docker 7.x hold only the package (no tests), so the script then falls back to the
newest sdist that still ships them, docker 6.1.3, and runs those tests with the installed SDK.

Which cluster: the one `DOCKER_HOST`/`DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH` name (a lab:
`eval "$(invoke docker-env)"`), else a fresh one made here on loopback (one manager and two
workers, `swarmkit_py.testing.agents`, their tasks on this machine's engine), stopped after.

What the harness changes, and why (written as the tests' conftest.py, replacing theirs):
- the tests' image (`alpine:3.10`, pulled by their session fixture) becomes the local task
  image: no registry is reachable from the lab, and the Docker API served here has no image
  endpoints;
- a test's first `init_swarm`/`swarm.init` applies the spec it asks for with a swarm update,
  later ones are sent as they are; the helper that force-leaves the swarm is not sent; each
  test's spec changes are put back after it: the tests form a one-node swarm on the engine
  they talk to and leave it after each class, while here the cluster is formed by
  `swarmkit-py init/join` and outlives them. Tests of what only `init`, `leave` or a one-node
  swarm do (address pools, data path port, leaving, "exactly one node") fail for that reason.
Everything else is the SDK's test code as published.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FILES = ["api_service_test.py", "api_swarm_test.py", "models_services_test.py",
         "models_swarm_test.py", "models_nodes_test.py"]
LAST_SDIST_WITH_TESTS = "6.1.3"
API_VERSION = "1.41"
CA_OVERRIDES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""requests lets these replace the CA file the SDK's TLS config names (the cluster's), so the
tests' clients would not trust the cluster's API; they are left out of the tests' environment."""

CONFTEST = '''"""swarmkit-py's harness for the SDK's integration tests (scripts/sdk_compat.py says why)."""
import os
import warnings

import pytest

import docker
import docker.api.swarm

from tests import helpers
from tests.integration import base

base.TEST_IMG = os.environ["SDK_COMPAT_IMAGE"]
_real_init = docker.api.swarm.SwarmApiMixin.init_swarm
_inits = []


def _keep_the_cluster(client, *args, **kwargs):
    return True


def _init_existing(self, *args, swarm_spec=None, **kwargs):
    """The cluster exists: an init applies its spec with an update (what init would have
    set); a test's second init is sent as it is (the API's "already part of a swarm")."""
    if _inits == ["in test", "init"]:
        return _real_init(self, *args, swarm_spec=swarm_spec, **kwargs)
    if _inits == ["in test"]:
        _inits.append("init")
    if swarm_spec:
        version = self.inspect_swarm()["Version"]["Index"]
        self.update_swarm(version=version, swarm_spec=swarm_spec)
    return self.info()["Swarm"]["NodeID"]


helpers.force_leave_swarm = _keep_the_cluster
base.BaseAPIIntegrationTest._init_swarm = staticmethod(
    lambda client, **kwargs: client.init_swarm(**kwargs))
docker.api.swarm.SwarmApiMixin.init_swarm = _init_existing


@pytest.fixture(autouse=True, scope="session")
def setup_test_session():
    warnings.simplefilter("error")


@pytest.fixture(autouse=True)
def restore_the_swarm_spec():
    """What a test's init or update changed is put back after it (the next test's
    "fresh swarm"), auto-lock included."""
    client = docker.APIClient(version=os.environ["DOCKER_TEST_API_VERSION"],
                              **docker.utils.kwargs_from_env())
    spec = client.inspect_swarm()["Spec"]
    _inits[:] = ["in test"]
    yield
    _inits.clear()
    client.update_swarm(version=client.inspect_swarm()["Version"]["Index"], swarm_spec=spec)
    client.close()
'''


def log(msg: str) -> None:
    print(f"sdk-compat: {msg}", file=sys.stderr, flush=True)


def fetch_tests(cache: Path) -> tuple[Path, str]:
    """(a tree holding tests/integration, where it came from)."""
    src = os.environ.get("DOCKER_PY_SRC")
    if src:
        root = Path(src)
        if not (root / "tests" / "integration").is_dir():
            raise SystemExit(f"DOCKER_PY_SRC={src} holds no tests/integration")
        return root, f"DOCKER_PY_SRC={src}"
    import docker

    cache.mkdir(parents=True, exist_ok=True)
    for version in (docker.__version__, LAST_SDIST_WITH_TESTS):
        sdist = cache / f"docker-{version}.tar.gz"
        if not sdist.exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--no-binary", ":all:", "-d", str(cache), f"docker=={version}"],
                           check=True)
        with tarfile.open(sdist) as tar:
            if any(m.name.startswith(f"docker-{version}/tests/integration/") for m in tar):
                tar.extractall(cache, filter="data")
                return cache / f"docker-{version}", f"the docker {version} sdist from PyPI"
        log(f"the docker {version} sdist ships no tests (7.x sdists hold only the package)")
    raise SystemExit("no docker sdist with tests found")


def prepare(src: Path, work: Path) -> Path:
    tree = work / "docker-py"
    shutil.copytree(src / "tests", tree / "tests")
    (tree / "tests" / "integration" / "conftest.py").write_text(CONFTEST)
    return tree


def own_cluster(base: Path):
    from swarmkit_py.testing.agents import AgentCluster

    c = AgentCluster(base)
    m1 = c.first_manager()
    for name in ("w1", "w2"):
        c.ready_worker(name, m1)
    return c, c.docker_env(m1)


def summarize(junit: Path) -> dict:
    root = ET.parse(junit).getroot()
    out: dict = {"passed": 0, "failed": 0, "error": 0, "skipped": 0, "failures": {}}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        if not kinds:
            out["passed"] += 1
            continue
        kind = "failed" if kinds[0] == "failure" else kinds[0]
        out[kind] += 1
        if kind != "skipped":
            child = next(ch for ch in case if ch.tag in ("failure", "error"))
            out["failures"][name] = (child.get("message") or "").splitlines()[0][:300]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "sdk-compat",
                    help="where the downloaded sdists are kept")
    ap.add_argument("--out", type=Path, help="write the summary as JSON here")
    ap.add_argument("pytest_args", nargs="*", help="more pytest arguments (e.g. -k update)")
    args = ap.parse_args()
    from swarmkit_py.taskimage import TASK_IMAGE

    src, origin = fetch_tests(args.cache)
    work = Path(tempfile.mkdtemp(prefix="sdk-compat-"))
    cluster = None
    try:
        tree = prepare(src, work)
        if os.environ.get("DOCKER_HOST"):
            env = dict(os.environ)
            where = f"DOCKER_HOST={env['DOCKER_HOST']}"
        else:
            import docker

            docker.from_env().images.get(TASK_IMAGE)  # the agents' tasks run on this engine
            cluster, env = own_cluster(work / "cluster")
            where = "a cluster made here (1 manager, 2 workers, loopback)"
        env = {k: v for k, v in env.items() if k not in CA_OVERRIDES}
        env.update(SDK_COMPAT_IMAGE=TASK_IMAGE, DOCKER_TEST_API_VERSION=API_VERSION,
                   PYTHONPATH=str(tree))
        log(f"tests: {origin}; cluster: {where}; API version {API_VERSION}")
        junit = work / "junit.xml"
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-o", "addopts=", "-o", "timeout=300", "--rootdir", str(tree),
                        f"--junitxml={junit}", "-rfE",
                        *[str(tree / "tests" / "integration" / f) for f in FILES],
                        *args.pytest_args], cwd=tree, env=env)
        if not junit.exists():
            raise SystemExit(f"pytest ended ({run.returncode}) without a report")
        summary = {"tests": origin, "cluster": where, **summarize(junit)}
    finally:
        if cluster is not None:
            import docker

            cluster.stop_all()
            cluster.remove_task_containers(docker.from_env())
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}))
    for name, why in sorted(summary["failures"].items()):
        print(f"  FAIL {name}: {why}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
