"""One party of MPyC's secure sum, the independent implementation the secure-aggregation sums are checked
against (run by tests/privacy/test_crosscheck.py as ``python mpyc_sum.py INPUTS OUTPUT -M3 -B PORT``).

INPUTS is a JSON list, one list of integers per party; party i secret-shares row i only (Shamir over MPyC's
prime field), the parties add the shares, and party 0 writes the opened sums to OUTPUT.
"""
import json
import sys

from mpyc.runtime import mpc


async def main(inputs_path, output_path):
    with open(inputs_path) as f:
        rows = json.load(f)
    await mpc.start()
    secint = mpc.SecInt(72)
    own = rows[mpc.pid]
    shared = [mpc.input(secint(v)) for v in own]  # shared[j][p]: party p's j-th value, secret-shared
    sums = [mpc.sum(shared[j]) for j in range(len(own))]
    opened = await mpc.output(sums)
    await mpc.shutdown()
    if mpc.pid == 0:
        with open(output_path, "w") as f:
            json.dump([int(v) for v in opened], f)


if __name__ == "__main__":
    inputs_path, output_path = sys.argv[1], sys.argv[2]
    del sys.argv[1:3]  # the rest are MPyC's own options (-M, -B, -I ...)
    mpc.run(main(inputs_path, output_path))
