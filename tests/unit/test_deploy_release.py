"""The release step with a site tar, on this machine as the "host": a wheel installed once on
the operator's side (wheelhouse._site), then `modules.release` runs its real shell commands
here (a local stand-in for the SSH connection): a real venv whose console script runs with the
venv's python, pure-Python packages imported from the release's zip (real paths in `__file__`
and tracebacks, metadata found) while a package with an extension module stays files, compiled
modules that are hash-checked pycs, a re-run that changes nothing, an
upload damaged on the way that is refused before anything is unpacked, and a site tar that is
never paired with a wheelhouse it was not made from."""

from __future__ import annotations

import base64
import hashlib
import importlib.machinery
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from swarmkit_py.deploy import modules, wheelhouse, zipsite
from swarmkit_py.deploy.runner import Ctx
from swarmkit_py.deploy.ssh import Result

PY = wheelhouse.build_python()


def _wheel(d: Path, greeting: str = "skpytest from") -> Path:
    """A minimal wheel: a pure package with a console script printing the interpreter's prefix,
    and a package holding an extension module (a stand-in file: only its name matters here)."""
    ext = importlib.machinery.EXTENSION_SUFFIXES[0]
    files = {
        "skpytest/__init__.py": (f"import sys\n\ndef main():\n    print({greeting!r}, sys.prefix)\n\n\n"
                                 "def boom():\n    raise ValueError('raised in the zip')\n").encode(),
        "skpytest/boom_cli.py": b"from skpytest import boom\n\nboom()\n",
        f"skpyext/_speedups{ext}": b"\x7fELF not really",
        "skpyext/__init__.py": b"",
        "skpytest-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: skpytest\nVersion: 0.1\n",
        "skpytest-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "skpytest-0.1.dist-info/entry_points.txt": b"[console_scripts]\nskpytest = skpytest:main\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("skpytest-0.1.dist-info/RECORD,,")
    w = d / "skpytest-0.1-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("skpytest-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return w


class LocalConn:
    """What `modules.release` uses of a HostConn, run on this machine; `damage` corrupts the
    next upload (a byte flipped on the way)."""

    def __init__(self):
        self.damage = False
        self.uploads = 0

    def run(self, cmd: str, timeout: float | None = 120.0, **_) -> Result:
        r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        return Result(r.returncode, r.stdout, r.stderr)

    def put_file(self, local: str, path: str, mode: int = 0o644) -> None:
        self.uploads += 1
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, path)
        if self.damage:
            data = bytearray(Path(path).read_bytes())
            data[len(data) // 2] ^= 0xFF
            Path(path).write_bytes(bytes(data))


@pytest.fixture
def wh(tmp_path, monkeypatch) -> wheelhouse.Wheelhouse:
    monkeypatch.setenv("SWARMKIT_WHEELHOUSE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    work = tmp_path / "build"
    (work / "wheels").mkdir(parents=True)
    _wheel(work / "wheels")
    tar = tmp_path / "cache" / "swarmkit-py-0.1.0-test.tar"
    with tarfile.open(tar, "w") as tf:
        for p in sorted((work / "wheels").iterdir()):
            tf.add(p, arcname=p.name)
    w = wheelhouse.Wheelhouse("0.1.0-test", tar, hashlib.sha256(tar.read_bytes()).hexdigest())
    wheelhouse._site(work / "wheels", work, w)
    tar.with_suffix(".sha256").write_text(w.sha256 + "\n")
    return w


def _ctx(tmp_path, w, conn, zstd: bool) -> Ctx:
    v = {"wheelhouse": w, "swarmkit_root": str(tmp_path / "opt"), "swarmkit_python": sys.executable}
    return Ctx(host=None, conn=conn, vars=v, facts={"python": PY, "zstd": zstd})


@pytest.mark.parametrize("zstd", [True, False], ids=["zstd", "gzip"])
def test_site_tar_release_is_a_working_venv_and_a_rerun_changes_nothing(tmp_path, wh, zstd):
    if zstd and not shutil.which("zstd"):
        pytest.skip("no zstd here: the gzip case covers this machine")
    conn = LocalConn()
    status, msg, _ = modules.release(_ctx(tmp_path, wh, conn, zstd))
    assert status == "changed", msg
    assert (".tar.zst" if zstd else ".tar.gz") in msg
    rel = tmp_path / "opt" / "releases" / wh.version
    assert (rel / "pyvenv.cfg").exists()  # a real venv, made on the host
    assert (rel / ".swarmkit-release").read_text().strip() == wh.sha256
    script = rel / "bin" / "skpytest"
    assert script.read_text().splitlines()[0] == f"#!{rel}/bin/python"
    out = subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"skpytest from {rel}"
    site = rel / "lib" / f"python{PY}" / "site-packages"
    assert not (site / "skpytest").exists() and (site / "skpytest-0.1.dist-info" / "METADATA").exists()
    assert (site / "skpyext" / "__init__.py").exists()  # an extension module: stays files
    pyc = next((site / "skpyext" / "__pycache__").glob("*.pyc"))
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11  # PEP 552: hash-based, checked
    with zipfile.ZipFile(site / zipsite.ZIP) as z:
        assert int.from_bytes(z.read("skpytest/__init__.pyc")[4:8], "little") == 0b11
    src = f"{site}/{zipsite.ZIP}/skpytest/__init__.py"
    out = subprocess.run([str(rel / "bin" / "python"), "-c", "import importlib.metadata, skpytest; "
                          "print(skpytest.__file__, skpytest.boom.__code__.co_filename, "
                          "importlib.metadata.version('skpytest'))"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [src, src, "0.1"]
    err = subprocess.run([str(rel / "bin" / "python"), "-m", "skpytest.boom_cli"], capture_output=True, text=True)
    assert err.returncode == 1
    assert f'File "{src}", line 8, in boom' in err.stderr and "raise ValueError('raised in the zip')" in err.stderr

    assert modules.release(_ctx(tmp_path, wh, conn, zstd))[0] == "ok"
    assert conn.uploads == 1

    (site / zipsite.ZIP).unlink()  # a damaged release: its modules are missing, and only they
    err = subprocess.run([str(rel / "bin" / "python"), "-c", "import skpytest"], capture_output=True, text=True)
    assert err.returncode == 1 and err.stderr.strip().splitlines()[-1] == "ModuleNotFoundError: No module named 'skpytest'"
    assert "sitecustomize" not in err.stderr


def test_damaged_upload_is_refused_before_unpacking_then_sent_again(tmp_path, wh):
    conn = LocalConn()
    conn.damage = True
    status, msg, _ = modules.release(_ctx(tmp_path, wh, conn, False))
    assert status == "failed"
    assert "does not have the sha256" in msg and "damaged or altered" in msg
    rel = tmp_path / "opt" / "releases" / wh.version
    assert not rel.exists()
    assert not list((tmp_path / "opt" / "wheelhouse").iterdir())  # the bad copy is not kept

    conn.damage = False
    assert modules.release(_ctx(tmp_path, wh, conn, False))[0] == "changed"
    assert (rel / ".swarmkit-release").read_text().strip() == wh.sha256


def test_site_tar_pairs_only_with_its_wheelhouse_and_relabel_keeps_it(tmp_path, wh):
    if shutil.which("zstd"):  # a build makes one site tar; the gzip one when a host needs it
        assert wheelhouse._site_built(wh, PY, "gz") is None
    zst, gz = wh.site(PY, ("zst",)), wh.site(PY, ("gz",))
    assert gz is not None and gz[0].name.endswith(f".site-cp{PY.replace('.', '')}.tar.gz")
    assert wh.site(PY) == (zst or gz)  # zstd first when it was built
    other = wheelhouse.Wheelhouse(wh.version, wh.tar, "0" * 64)
    assert other.site(PY) is None  # same file names, another wheelhouse: never paired
    assert wh.site("3.99") is None  # another Python: the host installs the wheels

    rc = wheelhouse.relabel(wh, "0.1.0-test-rc2")
    assert rc.sha256 != wh.sha256
    got = rc.site(PY, ("gz",))
    assert got is not None and got[1] == gz[1]  # the same wheels: the same site tar bytes


def test_relabel_with_a_replaced_wheel_makes_its_own_site_tar(tmp_path, wh):
    """`upgrade --wheel`: the new wheelhouse's site tar holds the new wheel, not the old one."""
    (tmp_path / "new").mkdir()
    new = wheelhouse.relabel(wh, "0.1.0-whl", {"skpytest-": _wheel(tmp_path / "new", "patched from")})
    got = new.site(PY, ("gz",))
    assert got is not None and got[1] != wh.site(PY, ("gz",))[1]
    status, msg, _ = modules.release(_ctx(tmp_path, new, LocalConn(), False))
    assert status == "changed", msg
    script = tmp_path / "opt" / "releases" / new.version / "bin" / "skpytest"
    out = subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout
    assert out.startswith("patched from ")


def test_release_upload_passes_the_runs_upload_gate(tmp_path, wh):
    """bootstrap's UploadGate: a host waits at it before uploading and opens it once through,
    after the upload or without one (the release already on the host)."""
    seen: list[str] = []

    class Gate:
        def wait(self, h):
            seen.append("wait")

        def done(self, h):
            seen.append("done")

    class Conn(LocalConn):
        def put_file(self, *a, **k):
            seen.append("upload")
            super().put_file(*a, **k)

    conn = Conn()
    ctx = _ctx(tmp_path, wh, conn, False)
    ctx.vars["upload_gate"] = Gate()
    assert modules.release(ctx)[0] == "changed"
    assert seen == ["wait", "upload", "done"]
    seen.clear()
    (tmp_path / "opt" / "releases" / wh.version / ".swarmkit-release").unlink()  # redo the install, not the upload
    assert modules.release(ctx)[0] == "changed" and seen == ["done"]


@pytest.mark.skipif(not shutil.which("strip"), reason="no strip (binutils) here")
def test_extension_modules_travel_without_their_debug_sections(tmp_path):
    """wheelhouse._strip_debug: a binary wheel's extension module loses its debug sections
    (smaller site tar, fewer bytes per host), keeps its symbols, and still loads; a file that
    is not one strip can read is left as it is."""
    import importlib.util

    import yaml

    src = next(Path(yaml.__file__).parent.glob("_yaml*.so"))
    stage = tmp_path / "site" / "lib" / "yaml"
    stage.mkdir(parents=True)
    shutil.copyfile(src, stage / src.name)
    fake = stage / f"fake{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    fake.write_bytes(b"\x7fELF not really")
    wheelhouse._strip_debug(tmp_path / "site")
    out = stage / src.name
    sections = subprocess.run(["readelf", "-S", str(out)], capture_output=True, text=True).stdout
    if ".debug_info" in subprocess.run(["readelf", "-S", str(src)], capture_output=True, text=True).stdout:
        assert ".debug_info" not in sections and out.stat().st_size < src.stat().st_size
    assert ".symtab" in sections or ".dynsym" in sections
    spec = importlib.util.spec_from_file_location("_yaml", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert hasattr(mod, "CParser")
    assert fake.read_bytes() == b"\x7fELF not really"
