"""Ports for our servers: free, outside the ephemeral range, and never handed out twice
while the server it was chosen for may still be starting (clusters started side by side)."""

from __future__ import annotations

import json
import multiprocessing
import time

from controlplane import ports


def _choose(reservations, count, queue):
    ports.RESERVATIONS = reservations
    queue.put(ports.free_ports(count))


def test_ports_chosen_at_once_by_several_processes_never_overlap(tmp_path, monkeypatch):
    reservations = tmp_path / "ports.json"
    monkeypatch.setattr(ports, "RESERVATIONS", reservations)
    # Nothing binds them: only the reservation keeps two pickers apart.
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    pickers = [context.Process(target=_choose, args=(reservations, 150, queue)) for _ in range(4)]
    for picker in pickers:
        picker.start()
    chosen = [queue.get(timeout=60) for _ in pickers]
    for picker in pickers:
        picker.join(timeout=60)
    everything = [port for group in chosen for port in group]
    assert len(everything) == 600 and len(set(everything)) == 600
    assert all(ports._LOWEST <= port < max(ports._LOWEST + 1000, ports._ephemeral_low()) for port in everything)
    assert len(json.loads(reservations.read_text())) == 600


def test_reservations_expire(tmp_path, monkeypatch):
    reservations = tmp_path / "ports.json"
    monkeypatch.setattr(ports, "RESERVATIONS", reservations)
    stale = {str(port): time.time() - ports.RESERVED_S - 1 for port in range(20000, 40000)}
    reservations.write_text(json.dumps(stale))
    assert len(ports.free_ports(3)) == 3  # the stale ones do not block anything
    assert len(json.loads(reservations.read_text())) == 3


def test_a_reservation_file_we_cannot_open_does_not_stop_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(ports, "RESERVATIONS", tmp_path / "missing-folder" / "ports.json")
    assert len(set(ports.free_ports(5))) == 5
