"""Several samplers split one night's footage chunk by chunk (SKIP LOCKED claims): every
sampled frame queued exactly once, each chunk by one sampler; a claim of a sampler that
died on this host is handed back at once."""

from __future__ import annotations

import threading

from ingest.batch import run as batch_run
from ingest.batch import video
from storage import batch as batch_repo
from storage import frames as frames_repo
from storage.evidence import EvidenceStore


def _setup(config, db, clip):
    config.batch.chunk_s = 1.0  # a chunk per sampled frame: four chunks to share
    library = batch_run.Library(config.evidence_dir)
    specs, refused = batch_run.discover([clip.path], device_kinds=batch_run.device_kinds(db))
    assert refused == []
    with db.connection() as conn:
        run_id = batch_repo.create_run(conn, "test", {})
    (reg,) = batch_run.register(db, library, run_id, specs, config.batch)
    return library, run_id, reg.source


def test_two_samplers_share_the_chunks_and_queue_each_frame_once(config, db, short_clip):
    library, run_id, source = _setup(config, db, short_clip)
    store = EvidenceStore(config.evidence_dir)
    samplers = [batch_run.Sampler(db, store, library, config.batch, config.detectors,
                                  run_id=run_id, name=f"sampler-{i}") for i in range(2)]
    threads = [threading.Thread(target=s.run, args=(threading.Event(),)) for s in samplers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with db.connection() as conn:
        indices = [r[0] for r in batch_repo.sampled_frames(conn, source.sha256)]
        chunks = batch_repo.chunk_states(conn, source.sha256)
        queued = sum(frames_repo.status_counts(conn).values())
    assert indices == video.probe(short_clip.path).sample(1) == [0, 30, 60, 90]
    assert queued == 4
    assert [(n, status, attempts) for n, status, attempts, _ in chunks] == [
        (i, "done", 1) for i in range(4)]


def test_a_dead_samplers_claim_is_handed_back_at_once(config, db, short_clip):
    library, run_id, source = _setup(config, db, short_clip)
    dead = f"{batch_run.claimer_id().split(':')[0]}:999999999:gone"  # no such pid
    with db.connection() as conn:
        claimed = batch_repo.claim_chunk(conn, dead, run_id)
    assert claimed.chunk_no == 0
    sampler = batch_run.Sampler(db, EvidenceStore(config.evidence_dir), library, config.batch,
                                config.detectors, run_id=run_id)
    assert sampler.run(threading.Event()) == 4  # chunk 0 included, without waiting
    with db.connection() as conn:
        chunks = batch_repo.chunk_states(conn, source.sha256)
    assert chunks[0][1:3] == ("done", 2)
