"""`swarmkit-py init --client-bundle DIR`: the operator's bundle signed by the new CA in the
same process (bootstrap no longer runs `client-cert` after it). DIR is made by init, 0700,
the key 0600; an existing DIR is refused before anything is written."""

from __future__ import annotations

import stat

from cryptography import x509

from swarmkit_py.cli.main import main


def test_init_writes_the_operators_bundle(tmp_path, capsys):
    state, out = tmp_path / "state", tmp_path / "bundle"
    assert main(["init", "--state-dir", str(state), "--advertise-addr", "127.0.0.1:2377",
                 "--client-bundle", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((state / "certs" / "swarm-root-ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert (out / "ca.pem").read_bytes() == (state / "certs" / "swarm-root-ca.crt").read_bytes()
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "operator"
    assert x509.ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert "wrote ca.pem, cert.pem, key.pem to" in capsys.readouterr().out


def test_init_refuses_a_bundle_directory_that_exists(tmp_path, capsys):
    state, out = tmp_path / "state", tmp_path / "bundle"
    out.mkdir(mode=0o755)
    assert main(["init", "--state-dir", str(state), "--advertise-addr", "127.0.0.1:2377",
                 "--client-bundle", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert not (state / "node.json").exists() and list(out.iterdir()) == []


def test_init_without_the_option_writes_no_bundle(tmp_path):
    state = tmp_path / "state"
    assert main(["init", "--state-dir", str(state), "--advertise-addr", "127.0.0.1:2377"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
