"""The wheelhouse: the agent and all its dependencies as wheels, built once per version.

Hosts may have no route to any package index (the lab's have none), so everything the agent
needs travels in one tar of wheels. The release version is the project version plus a hash
of the runtime's sources (`0.1.0-3f2a9c1d0b`): a code change makes a new release directory on
the hosts, an unchanged tree maps to the release already installed, which is what makes a
re-run change nothing. Operator-side code (`swarmkit_py/deploy`, `swarmkit_py/testing`) is left
out of the hash: editing the deploy toolkit must not force an agent upgrade.

Beside each wheelhouse tar the cache keeps its *site tar* for the operator's Python
(`swarmkit-py-<version>.site-cp311.tar.zst`; a `.tar.gz` is made from it for hosts without
zstd): the wheels installed once, here, into a staging tree laid out as a venv
(`lib/python3.11/site-packages`, `bin/`), every module compiled (hash-checked pycs). A host
whose Python is the same minor version makes its venv and unpacks that into it
(`modules.release`): one `tar -x` instead of running pypa's `installer` over ~30 wheels and
unpacking a bytecode tar, which on seven lab hosts sharing two cores was the largest single
cost of a bootstrap (21 s of their CPU; a site tar of files 12-14 s, nearly all of it the
kernel creating ~2,600 files per host, the lab's hosts all writing to one disk). So the
pure-Python packages travel as one zip inside it (`_zip_pure`, imported through zipsite.py):
~800 entries per host, 3.7 s of the 7 hosts' CPU (bench/README.md, "Toolkit speed"). zstd
because unpacking is then mostly the files' creation: gzip's decompression alone cost a host
0.55 s of CPU, zstd's 0.1 s, for a smaller upload (16 MB; gzip 19 MB). The console scripts
carry a placeholder interpreter (`SITE_INTERPRETER`) the host replaces with its venv's python;
the names of those scripts travel in the tar (`SITE_SCRIPTS`). The site tar's own sha256 is kept next to it with the
sha256 of the wheelhouse it was made from, so a host checks the bytes it received and a site
tar is never paired with another wheelhouse. Hosts with another Python still get the
wheelhouse and install it with `installer`.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import importlib.machinery
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import zipsite

REPO_ROOT = Path(__file__).resolve().parents[2]
EXCLUDED = ("swarmkit_py/deploy/", "swarmkit_py/testing/")
INSTALLER_REQ = "installer>=0.7"
"""The wheel installer shipped in every wheelhouse (its CLI takes several wheels since 0.7)."""
SITE_INTERPRETER = "/swarmkit-py-venv/bin/python"
"""The interpreter the site tar's console scripts name in their `#!` line; the host writes its
venv's python there (it must be a simple shebang: short, no spaces, as installer would make)."""
SITE_SCRIPTS = ".swarmkit-scripts"
"""The site tar member (at the venv's root) listing its console scripts, one per line."""

SITE_FORMATS = ("zst", "gz")
"""Site tar compressions, preferred first: zstd where the host has it, else gzip (Essential
on Debian, so every host has it). A build makes the zstd one (gzip if this side has no zstd)."""


@dataclass(frozen=True)
class Wheelhouse:
    version: str
    tar: Path
    sha256: str

    def site(self, python: str, formats=SITE_FORMATS) -> tuple[Path, str] | None:
        """(site tar, its sha256) for hosts running Python `python` ("3.11") that can unpack
        one of `formats` (preferred first), made from this wheelhouse; None if there is none
        (the host installs the wheels). The gzip one is made from the zstd one the first
        time a host without zstd asks for it (most hosts have zstd: no build pays for both)."""
        for fmt in formats:
            got = _site_built(self, python, fmt)
            if got is not None:
                return got
        if "gz" in formats and shutil.which("zstd"):
            src = _site_built(self, python, "zst")
            if src is not None:
                with open(self.tar.parent / ".lock", "w") as lk:
                    fcntl.flock(lk, fcntl.LOCK_EX)
                    if _site_built(self, python, "gz") is None:
                        plain = src[0].with_name(src[0].name + ".plain.tmp")
                        r = subprocess.run(["zstd", "-q", "-d", "-f", "--long=27", str(src[0]), "-o", str(plain)],
                                           capture_output=True, text=True)
                        if r.returncode != 0:
                            raise RuntimeError(f"zstd -d {src[0]} failed: {r.stderr[-2000:]}")
                        _compress(plain, site_path(self.tar, python, "gz"), "gz", self)
                        plain.unlink()
                return _site_built(self, python, "gz")
        return None


def _site_built(wh: Wheelhouse, python: str, fmt: str) -> tuple[Path, str] | None:
    p = site_path(wh.tar, python, fmt)
    try:
        sha, of = _sha_file(p).read_text().split()
    except (OSError, ValueError):
        return None
    return (p, sha) if of == wh.sha256 and p.exists() else None


def site_path(tar: Path, python: str, fmt: str) -> Path:
    """Where the site tar (compression `fmt`) for Python `python` of wheelhouse `tar` is cached."""
    return tar.with_name(f"{tar.name.removesuffix('.tar')}.site-cp{python.replace('.', '')}.tar.{fmt}")


def _sha_file(site: Path) -> Path:
    """Beside a site tar: its sha256 and the sha256 of the wheelhouse it was made from."""
    return site.with_name(site.name + ".sha256")


def build_python() -> str:
    """The Python this side builds site tars for: the one running the toolkit ("3.11")."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def from_git(root: Path = REPO_ROOT) -> bool:
    """Build from the last commit (default in a git checkout): a release is then reproducible
    and never picks up someone's half-edited file. SWARMKIT_BUILD_FROM=worktree builds the
    working tree instead (trying uncommitted code on the lab)."""
    return os.environ.get("SWARMKIT_BUILD_FROM", "git") != "worktree" and (root / ".git").exists()


def ref() -> str:
    """The commit to build (SWARMKIT_BUILD_REF, default HEAD): pin it to deploy a known commit
    while others keep committing (the lab tests do)."""
    return os.environ.get("SWARMKIT_BUILD_REF") or "HEAD"


def suffix() -> str:
    """SWARMKIT_RELEASE_SUFFIX (e.g. `rc2`) is appended to the release name: a second, distinct
    release of the same sources, so an upgrade (and its rollback) can be exercised without a
    second commit and without a network. Its wheelhouse is the unsuffixed one re-labelled."""
    s = os.environ.get("SWARMKIT_RELEASE_SUFFIX", "")
    if s and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._]{0,31}", s):
        raise ValueError(f"SWARMKIT_RELEASE_SUFFIX={s!r}: letters, digits, '.' and '_' only (it names a directory)")
    return f"-{s}" if s else ""


def source_version(root: Path = REPO_ROOT) -> str:
    return _base_version(root) + suffix()


def _base_version(root: Path) -> str:
    base = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    h = hashlib.sha256()
    if from_git(root):
        out = subprocess.run(["git", "-C", str(root), "ls-tree", "-r", ref(), "--", "pyproject.toml", "swarmkit_py"],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if not line.split("\t", 1)[1].startswith(EXCLUDED):
                h.update(line.encode() + b"\n")
        return f"{base}-{h.hexdigest()[:10]}"
    h.update((root / "pyproject.toml").read_bytes())
    for p in sorted((root / "swarmkit_py").rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(EXCLUDED) or "__pycache__" in rel:
            continue
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return f"{base}-w{h.hexdigest()[:9]}"


def _source_tree(root: Path, work: Path) -> Path:
    """What `pip wheel` builds: the HEAD commit exported to a temp dir, or the working tree."""
    if not from_git(root):
        return root
    src = work / "src"
    src.mkdir(parents=True)
    arch = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", ref()], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(arch.stdout)) as tf:
        tf.extractall(src, filter="data")
    return src


def cache_dir() -> Path:
    return Path(os.environ.get("SWARMKIT_WHEELHOUSE_DIR") or REPO_ROOT / ".lab" / "wheelhouse")


def build(root: Path = REPO_ROOT, log=print) -> Wheelhouse:
    """The wheelhouse of the current source tree, from the cache when it exists. A lock
    keeps two concurrent runs (a test and an operator) from building the same one twice."""
    version = source_version(root)
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    tar = base / f"swarmkit-py-{version}.tar"
    shaf = tar.with_suffix(".sha256")
    if suffix() and not (tar.exists() and shaf.exists()):
        return relabel(build_unsuffixed(root, log), version)
    with open(base / ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if tar.exists() and shaf.exists():
            return Wheelhouse(version, tar, shaf.read_text().strip())
        work = base / f"build-{version}"
        shutil.rmtree(work, ignore_errors=True)
        wheels = work / "wheels"
        log(f"building wheelhouse {version} (pip wheel of the project and its dependencies)")
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels),
                            str(_source_tree(root, work))], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pip wheel failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        # pypa's `installer`, so hosts install the wheels into a venv made --without-pip with
        # `python -m installer` (the wheel on PYTHONPATH): 0.5 s of CPU per host where pip
        # took 2.4 s, which on 7 hosts sharing 2 cores was most of a warm bootstrap
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "-d", str(wheels), INSTALLER_REQ], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pip download {INSTALLER_REQ} failed:\n{r.stderr[-3000:]}")
        (wheels / "VERSION").write_text(version + "\n")
        tmp = tar.with_suffix(".tmp")
        with tarfile.open(tmp, "w") as tf:
            for p in sorted(wheels.iterdir()):
                ti = tf.gettarinfo(str(p), arcname=p.name)
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "root", "root"
                with open(p, "rb") as f:
                    tf.addfile(ti, f)
        sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
        _site(wheels, work, Wheelhouse(version, tar, sha))
        tmp.replace(tar)
        shaf.write_text(sha + "\n")
        shutil.rmtree(work, ignore_errors=True)
        return Wheelhouse(version, tar, sha)


def pycache_name(python: str) -> str:
    """The member of wheelhouses built before site tars that holds their compiled modules for
    Python `python` ("3.11"); hosts still unpack it when installing such a wheelhouse."""
    return f"pycache-cp{python.replace('.', '')}.tar.gz"


_STAGE = """
import sys
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

root, py, interpreter, *wheels = sys.argv[1:]
site = f"{root}/lib/python{py}/site-packages"
for w in wheels:
    with WheelFile.open(w) as src:
        scheme = {"purelib": site, "platlib": site, "scripts": f"{root}/bin", "data": root,
                  "headers": f"{root}/include/site/python{py}/{src.distribution}"}
        install(src, SchemeDictionaryDestination(scheme, interpreter, "posix"), {"INSTALLER": b"swarmkit-py\\n"})
"""
"""Install wheels into a staging tree laid out as a venv is (the `venv` sysconfig scheme),
console scripts naming `interpreter`: installer's API, as its CLI would but without taking the
interpreter (and the prefix's layout) from the Python running it."""


def _site(wheels: Path, work: Path, wh: Wheelhouse) -> None:
    """Install the wheels of `wheels` once, here, into a venv-shaped staging tree, compile
    every module (hash-checked pycs, PEP 552: valid whatever the files' mtimes are on the
    host, and still recompiled there if someone edits a source), and write the tree as the
    site tar of `wh` for this Python, with its sha256. Without the compiled modules each
    host would compile what it imports on first use, in every process that gets there first
    (`init`, `join`, the agent): about 1 s of CPU per host."""
    # the installer the wheelhouse ships (run from its wheel), else this side's own (`deploy` extra)
    inst = next(wheels.glob("installer-*.whl"), None)
    env = {**os.environ, "PYTHONPATH": str(inst)} if inst else None
    stage = work / "site"
    shutil.rmtree(stage, ignore_errors=True)
    py = build_python()
    r = subprocess.run([sys.executable, "-c", _STAGE, str(stage), py, SITE_INTERPRETER,
                        *(str(w) for w in sorted(wheels.glob("*.whl")) if w != inst)],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"staging the wheels failed:\n{r.stderr[-3000:]}")
    _strip_debug(stage)
    zipped = _zip_pure(stage / "lib" / f"python{py}" / "site-packages", work / "zip")
    _compileall(stage / "lib")
    # beside their sources (zipimport's only layout); co_filename is set at import (zipsite.py)
    _compileall(zipped, "-b", "-s", str(zipped))
    _write_zip(zipped, stage / "lib" / f"python{py}" / "site-packages" / zipsite.ZIP)
    bin_ = stage / "bin"
    scripts = sorted(p.name for p in bin_.iterdir()) if bin_.is_dir() else []
    if any(not (bin_ / n).read_bytes().startswith(f"#!{SITE_INTERPRETER}\n".encode()) for n in scripts):
        raise RuntimeError(f"a console script in {bin_} does not start with #!{SITE_INTERPRETER}")
    (stage / SITE_SCRIPTS).write_text("".join(f"{n}\n" for n in scripts))
    plain = work / "site.tar"
    with tarfile.open(plain, "w") as tf:
        for p in sorted(stage.rglob("*")):
            ti = tf.gettarinfo(str(p), arcname=p.relative_to(stage).as_posix())
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "root", "root"
            if ti.isfile():
                with open(p, "rb") as fh:
                    tf.addfile(ti, fh)
            else:
                tf.addfile(ti)
    shutil.rmtree(stage, ignore_errors=True)
    fmt = "zst" if shutil.which("zstd") else "gz"  # gzip from it on demand (Wheelhouse.site)
    _compress(plain, site_path(wh.tar, py, fmt), fmt, wh)
    plain.unlink()


def _strip_debug(stage: Path) -> None:
    """Drop the debug sections of the extension modules (`strip --strip-debug`: the symbol
    tables stay, so a crash still names its functions). Binary wheels ship them unstripped:
    60 MB of site per host instead of 48, a 16 MB site tar instead of 13, bytes every host
    uploads, checks, decompresses and writes on a bootstrap's path. Skipped without `strip`
    (binutils) here; a module strip cannot handle is left as it is."""
    strip = shutil.which("strip")
    if strip is None:
        return
    ext = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for p in sorted(stage.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.name.endswith(ext):
            subprocess.run([strip, "--strip-debug", str(p)], capture_output=True)


def _compileall(path: Path, *opts: str) -> None:
    r = subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "checked-hash",
                        *opts, str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"compileall failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")


ON_DISK = {
    "certifi": "its CA bundle is opened by path: from a zip `certifi.where()` would extract it to a "
               "temporary file in every process that asks",
    "cffi": "its recompiler reads C headers beside its modules by path",
    "pycparser": "its AST generator reads its _c_ast.cfg by path",
}
"""Pure-Python packages kept as files (not zipped), and why."""


def _zip_pure(site: Path, dest: Path) -> Path:
    """Move the pure-Python top-level packages and modules of `site` (no extension module,
    not in ON_DISK) to `dest`: they travel as one zip (zipsite.py), so a host creates ~800
    files instead of ~2,600. Their dist-info stays in `site` (importlib.metadata reads it there).
    Packages with extension modules stay files (zipimport cannot load those). The module that
    imports from the zip (zipsite.py), and its `.pth`, are written into `site`."""
    ext = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    dest.mkdir(parents=True)
    pure: set[str] = set()
    for p in sorted(site.iterdir()):
        name = p.name.removesuffix(".py")
        if p.name.endswith(".dist-info") or p.suffix == ".pth" or p.name == "__pycache__" or name in ON_DISK:
            continue
        if p.is_dir() and not any(f.name.endswith(ext) for f in p.rglob("*")) or p.suffix == ".py":
            pure.add(p.name)
    for name in sorted(pure):
        shutil.move(str(site / name), str(dest / name))
    (site / f"{zipsite.MODULE}.py").write_bytes(Path(zipsite.__file__).read_bytes())
    (site / f"{zipsite.MODULE}.pth").write_text(zipsite.PTH)
    return dest


def _write_zip(src: Path, dest: Path) -> None:
    """`src`'s tree as zip `dest`: stored (zstd compresses the site tar around it, and imports
    then read without inflating), sorted, fixed dates (the same input, the same bytes),
    directory entries included (zipimport finds namespace packages by them)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(src.rglob("*")):
            arc = p.relative_to(src).as_posix() + ("/" if p.is_dir() else "")
            zi = zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0))
            zi.external_attr = (0o40755 if p.is_dir() else 0o100644) << 16
            zf.writestr(zi, b"" if p.is_dir() else p.read_bytes())
    shutil.rmtree(src)


def _compress(plain: Path, dest: Path, fmt: str, wh: Wheelhouse) -> None:
    """Compress the site tar `plain` to `dest` and write its sha256 file (paired with `wh`)."""
    tmp = dest.with_name(dest.name + ".tmp")
    if fmt == "zst":
        # --long: the window spans the whole tar, so a module's .py and .pyc share matches
        r = subprocess.run(["zstd", "-q", "-f", "-9", "-T0", "--long=27", str(plain), "-o", str(tmp)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"zstd failed: {r.stderr[-2000:]}")
    else:
        with open(plain, "rb") as src, open(tmp, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
            shutil.copyfileobj(src, gz, 1 << 20)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.replace(dest)
    _sha_file(dest).write_text(f"{sha} {wh.sha256}\n")


def site_unpack(fmt: str, src: str, dest: str) -> str:
    """The host's command unpacking site tar `src` (compression `fmt`) into directory `dest`."""
    if fmt == "zst":
        return f"tar -I 'zstd -d --long=27' -xf {src} -C {dest}"
    return f"tar -xzf {src} -C {dest}"


def build_unsuffixed(root: Path = REPO_ROOT, log=print) -> Wheelhouse:
    saved = os.environ.pop("SWARMKIT_RELEASE_SUFFIX", None)
    try:
        return build(root, log)
    finally:
        if saved is not None:
            os.environ["SWARMKIT_RELEASE_SUFFIX"] = saved


def relabel(src: Wheelhouse, version: str, replace: dict[str, Path] | None = None) -> Wheelhouse:
    """A copy of wheelhouse `src` named `version` (its VERSION member rewritten), cached beside
    the others, with its site tar: `src`'s when no wheel changed, else made again from the new
    set of wheels. `replace` swaps wheels: {name prefix: wheel file} (e.g. a locally built
    `swarmkit_py-` wheel over the tree's own), for `invoke upgrade --wheel`."""
    base = cache_dir()
    tar = base / f"swarmkit-py-{version}.tar"
    shaf = tar.with_suffix(".sha256")
    with open(base / ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if tar.exists() and shaf.exists():
            return Wheelhouse(version, tar, shaf.read_text().strip())
        tmp = tar.with_suffix(".tmp")
        with tarfile.open(src.tar) as tin, tarfile.open(tmp, "w") as tout:
            members = {}
            for ti in tin.getmembers():
                if any(ti.name.startswith(p) for p in (replace or {})):
                    continue
                members[ti.name] = (ti, None if ti.name == "VERSION" else tin.extractfile(ti).read())
            for p in (replace or {}).values():
                ti = tarfile.TarInfo(p.name)
                members[p.name] = (ti, p.read_bytes())
            members["VERSION"] = (tarfile.TarInfo("VERSION"), (version + "\n").encode())
            for name in sorted(members):
                ti, data = members[name]
                ti.size, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = len(data), 0, 0, 0, "root", "root"
                tout.addfile(ti, io.BytesIO(data))
        wh = Wheelhouse(version, tar, hashlib.sha256(tmp.read_bytes()).hexdigest())
        py = build_python()
        same = [_site_built(src, py, fmt) for fmt in SITE_FORMATS] if not replace else []
        if any(same):  # the same wheels: the same site tars (no version inside)
            for fmt, have in zip(SITE_FORMATS, same, strict=True):
                if have:
                    dest = site_path(tar, py, fmt)
                    shutil.copyfile(have[0], dest)
                    _sha_file(dest).write_text(f"{have[1]} {wh.sha256}\n")
        elif any(n.endswith(".whl") for n in members):
            work = base / f"build-{version}"
            shutil.rmtree(work, ignore_errors=True)
            (work / "wheels").mkdir(parents=True)
            for name, (_, data) in members.items():
                if name.endswith(".whl"):
                    (work / "wheels" / name).write_bytes(data)
            _site(work / "wheels", work, wh)
            shutil.rmtree(work, ignore_errors=True)
        tmp.replace(tar)
        shaf.write_text(wh.sha256 + "\n")
        return wh
