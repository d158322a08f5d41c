"""The dev cluster's listening ports stay out of the kernel's ephemeral range, where a restarted component
could find its port taken as the source port of some client's connection."""

from __future__ import annotations

import socket

from devcluster.cluster import PORT_NAMES, _choose_ports, _ephemeral_range


def test_fresh_ports_are_below_the_ephemeral_range_and_distinct() -> None:
    low, _ = _ephemeral_range()
    ports = _choose_ports({})
    assert set(ports) == set(PORT_NAMES)
    assert len(set(ports.values())) == len(PORT_NAMES)
    assert all(p < low for p in ports.values()), ports


def test_a_previous_port_in_the_ephemeral_range_is_replaced_and_one_below_is_kept() -> None:
    low, _ = _ephemeral_range()
    kept = _choose_ports({})["apiserver"]
    ports = _choose_ports({"apiserver": kept, "etcd-client": low + 10})
    assert ports["apiserver"] == kept
    assert ports["etcd-client"] < low


def test_a_port_in_use_is_not_chosen_again() -> None:
    taken = _choose_ports({})["apiserver"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", taken))
        sock.listen()
        assert _choose_ports({"apiserver": taken})["apiserver"] != taken


def test_the_test_registries_listen_below_the_ephemeral_range_too() -> None:
    from devcluster import registries

    low, _ = _ephemeral_range()
    ports = {registries.free_port() for _ in range(20)}
    assert all(p < low for p in ports), ports
