"""clustering/collectives.py: the network interface of the gloo side group
(the rule, and that it reaches torch's gloo in a real one-rank group)."""
import os
import socket
import subprocess
import sys

import pytest

from xdc_plugin.clustering.collectives import gloo_interface

HOST = ['lo', 'eth0', 'ib0', 'ib1']


@pytest.mark.parametrize('environ, expected', [
    ({}, None),                                           # hostname
    ({'GLOO_SOCKET_IFNAME': 'eth0'}, 'eth0'),
    ({'GLOO_SOCKET_IFNAME': 'eth0', 'NCCL_SOCKET_IFNAME': 'ib'}, 'eth0'),
    ({'NCCL_SOCKET_IFNAME': 'ib'}, 'ib0'),                # first match
    ({'NCCL_SOCKET_IFNAME': 'en,ib1'}, 'ib1'),
    ({'NCCL_SOCKET_IFNAME': '=ib1,eth0'}, 'ib1,eth0'),    # exact names
    ({'NCCL_SOCKET_IFNAME': '^docker,lo'}, None),         # exclusions
    ({'NCCL_SOCKET_IFNAME': 'wlan'}, None),               # nothing matches
])
def test_interface_rule(environ, expected):
    assert gloo_interface(environ, HOST) == expected


GROUP = '''
import os, torch, torch.distributed as d
from xdc_plugin.clustering import collectives
store = d.TCPStore('127.0.0.1', 0, 1, is_master=True)
d.init_process_group('gloo', store=store, rank=0, world_size=1)
group = collectives._gloo_group()
t = torch.ones(3)
d.all_reduce(t, group=group)
print('ok', t.tolist(), os.environ.get('GLOO_SOCKET_IFNAME'))
'''


def side_group(nccl_ifname):
    env = {k: v for k, v in os.environ.items() if k != 'GLOO_SOCKET_IFNAME'}
    env['NCCL_SOCKET_IFNAME'] = nccl_ifname
    return subprocess.run([sys.executable, '-c', GROUP], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_side_group_follows_nccl_socket_ifname():
    loopback = next(name for _, name in socket.if_nameindex()
                    if name.startswith('lo'))
    out = side_group('=' + loopback)
    assert out.returncode == 0, out.stderr[-2000:]
    # the group worked over it; the variable is not left set
    assert out.stdout.split() == ['ok', '[1.0,', '1.0,', '1.0]', 'None']
    out = side_group('=nosuchif0')
    assert out.returncode != 0
    assert 'nosuchif0' in out.stderr
