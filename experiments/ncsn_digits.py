"""NCSN on digits: noise-conditional multi-sigma denoising score matching, sampled with annealed
Langevin dynamics (Song & Ermon 2019; the NCSNv2 techniques of Song & Ermon 2020).

Command:
  python -m gen.main --config=experiments/ncsn_digits.py --workdir=runs/ncsn_digits
Expected on a 2-core CPU: 1,357 s wall (22.6 min incl. compile and the 501-NFE sampling); sliced_w2
0.078 (seed 0). The samples at step 6000 are mostly recognisable digits (0, 3, 5, 6, 7, 9 clearest),
a few grainy or malformed strokes; step 3000's are noisier.
Smoke variant: --config=experiments/ncsn_digits.py:smoke
"""

from experiments import base, common


def get_config(arg: str | None = None):
  """NCSN in gen's terms (one objective covers it, no separate code path):

  - noise levels: sigma from 20 (about the largest distance between two 8x8 digits in [-1, 1],
    NCSNv2 technique 1) down to 0.01, geometric: gen's 've' process, sigma(t) = 0.01 * 2000^t;
  - loss: lambda(sigma) = sigma^2 weighted DSM, NCSN's choice, which is gen's 'eps' weighting;
  - network: s(x, sigma) = -eps_hat(x, sigma) / sigma, i.e. the noise-conditional score scaled
    by 1 / sigma (NCSNv2 technique 3), here the small U-Net with sigma features;
  - training levels: continuous, log-uniform in sigma (NCSN draws one of L discrete levels);
  - sampling: annealed Langevin (NCSN Algorithm 1): 100 geometric levels from 20 to 0.01, 5
    steps each with a_i = 0.2 sigma_i^2 (NCSN's eps = 2e-5 at sigma_L = 0.01), then the final
    denoising step of NCSNv2 (Jolicoeur-Martineau et al. 2021). NFE 501.
  """
  c = base.get_config(objective='diffusion')
  common.digits_unet(c)
  c.diffusion.process = 've'
  c.diffusion.sigma_min = 0.01
  c.diffusion.sigma_max = 20.0
  c.diffusion.parameterization = 'eps'
  c.diffusion.weighting = 'eps'
  c.diffusion.time_sampling = 'low_discrepancy'
  c.train.num_steps = 6000
  c.train.ckpt_every = 3000
  c.train.sample_every = 3000
  c.diffusion.sample.sampler = 'annealed_langevin'
  c.diffusion.sample.num_steps = 100
  c.diffusion.sample.langevin_steps = 5
  c.diffusion.sample.step_ratio = 0.2
  c.diffusion.sample.noise_scale = 1.0
  return common.variant(c, arg, name='ncsn_digits', smoke=common.smoke)
