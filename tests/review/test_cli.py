"""`citywatch users`, `cases export` and `evidence verify` as a user runs them."""

from __future__ import annotations

import json

from citywatch.cli import main
from storage import review as review_store


def test_users_export_and_verify(env, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CITYWATCH_DATABASE_URL", env.config.database.url)
    monkeypatch.setenv("CITYWATCH_DATA_DIR", env.config.data_dir)
    monkeypatch.setenv("CITYWATCH_PASSWORD", "a long enough password")
    assert main(["users", "add", "li", "--role", "supervisor"]) == 0
    assert main(["users", "add", "li", "--role", "supervisor"]) == 1  # taken
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setenv("CITYWATCH_PASSWORD", "short")
    assert main(["users", "passwd", "li"]) == 1
    assert "at least 10 characters" in capsys.readouterr().err
    assert main(["users", "disable", "li"]) == 0
    assert main(["users", "list", "--json"]) == 0
    listed = {u["username"]: u for u in json.loads(capsys.readouterr().out)}
    assert listed["li"]["role"] == "supervisor" and listed["li"]["disabled"]
    with env.db.connection() as conn:
        assert review_store.user_with_hash(conn, "li")[1].startswith("$argon2id$")

    out = tmp_path / "case.zip"
    assert main(["cases", "export", str(env.drone_case), "--out", str(out)]) == 0
    assert main(["evidence", "verify", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    data = bytearray(out.read_bytes())
    at = data.index(b"report.html") - 200  # inside the (deflated) audit or report data
    data[at] ^= 0x20
    out.write_bytes(bytes(data))
    assert main(["evidence", "verify", str(out), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and report["problems"]
    assert main(["cases", "export", "999999", "--out", str(tmp_path / "x.zip")]) == 1
