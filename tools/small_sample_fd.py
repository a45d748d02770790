"""FD-digits of real digits at small n: the point estimate, its bootstrap interval and FD-infinity.

Draws n random training digits (5 draws per n, seeds 0-4) and scores them against the test
split's reference statistics with the digits classifier's features, as `--mode=eval` does. Prints
one line per n: FD, fd_low, fd_high (100 bootstrap rounds), FD-infinity and the bootstrap's
seconds, each over the 5 draws. Needs the digits classifier (trained on first use, ~75 s).

  python tools/small_sample_fd.py
"""

import time

import numpy as np

from gen import data as data_lib
from gen.metrics import features, frechet, reference


def main():
  data_dir = data_lib.default_data_dir()
  spec = data_lib.get_spec('digits', data_dir)
  net = features.load('auto', spec, data_dir)
  ref = reference.load_or_compute('digits', 'test', net, data_dir)
  train = np.concatenate(list(reference.split_examples('digits', 'train', None)))
  feats = features.extract(net, train)['features']
  print(f'reference: digits test, n = {ref.stats.n}; training digits: {len(feats)}')
  for n in (297, 500, 1000, 1500):
    rows = []
    for seed in range(5):
      x = feats[np.random.default_rng(seed).permutation(len(feats))[:n]]
      fd = frechet.frechet_distance(frechet.fit_gaussian(x), ref.stats)
      start = time.time()
      low, high = frechet.frechet_bootstrap(x, ref.stats, 100, seed)
      seconds = time.time() - start
      rows.append((fd, low, high, frechet.frechet_infinity(x, ref.stats, seed=seed), seconds))
    cols = np.round(np.array(rows), 1).T.tolist()
    print(
      f'n={n}: fd {cols[0]} fd_low {cols[1]} fd_high {cols[2]} fd_infinity {cols[3]} '
      f'bootstrap {np.mean(cols[4]):.1f} s'
    )


if __name__ == '__main__':
  main()
