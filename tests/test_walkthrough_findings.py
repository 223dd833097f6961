"""The rough edges a new user met in a first hour (issue 23's walk-through), one test each."""

from __future__ import annotations


# ---------------------------------------------------------------- 2: progress bars
def test_a_cached_dissection_draws_no_progress_bar(seg_session, tmp_path, capsys):
    seg_session.dissect("layer2", n=16, cache=tmp_path, progress=True)
    assert "dissect layer2" in capsys.readouterr().err  # computed: a bar
    seg_session.dissections.clear()
    d = seg_session.dissect("layer2", n=16, cache=tmp_path, progress=True)
    assert "dissect layer2" not in capsys.readouterr().err  # from the cache: no "0% 0/4"
    assert seg_session.dissections["layer2"] is d
    job = seg_session.dissect("layer2", n=16, cache=tmp_path, progress=True, background=True)
    assert job.result(10).labels == d.labels and job.progress == 1.0
    assert "dissect layer2" not in capsys.readouterr().err
