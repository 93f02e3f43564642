"""SIMULATION: source templates of the stand-in NVIDIA tools (lab only, never production).

Each module here is a stdlib-only Python 3 script. :mod:`llmcluster.lab.nvidia_sim.debs`
bakes it into a stand-in ``.deb``: the ``sim:common`` import block is replaced by the text of
:mod:`._common` and the ``BAKED`` dict by the package's values (version, tool name), so the
installed tool is one self-contained ``#!/usr/bin/python3`` file. The tools simulate an HGX
node from ``/etc/llmcluster-sim/hardware.json``; none of them touches a real GPU.
"""
