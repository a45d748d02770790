"""Score SDE (VP, continuous) on CIFAR-10 with the DDPM++ recipe of score_sde (GPU/TPU).

Command (prepare the data once with `gen prepare --dataset=cifar10`):
  python -m gen.main --config=experiments/score_sde_vp_cifar10.py --workdir=runs/vp_cifar10
Expected: Song et al. 2021 report FID 2.55 (DDPM++ cont., VP, PC sampling) after 1.3M steps of batch
128. Not measured on a 2-core CPU; the tests run one step of this network on CPU. Differences from
score_sde's DDPM++: gen's U-Net has no FIR resampling or skip rescaling.
Smoke variant: --config=experiments/score_sde_vp_cifar10.py:smoke
"""

from experiments import base, common


def get_config(arg: str | None = None):
  """VP SDE beta in [0.1, 20], eps prediction, 4 residual blocks per level, EMA 0.9999."""
  c = base.get_config(objective='diffusion')
  common.cifar10_unet(c, num_res_blocks=4)
  c.diffusion.process = 'vp'
  c.diffusion.beta_min = 0.1
  c.diffusion.beta_max = 20.0
  c.diffusion.parameterization = 'eps'
  c.diffusion.weighting = 'eps'
  c.diffusion.time_sampling = 'uniform'
  c.train.num_steps = 1_300_000
  c.diffusion.sample.sampler = 'euler_maruyama'
  c.diffusion.sample.num_steps = 1000
  return common.variant(c, arg, name='score_sde_vp_cifar10', smoke=common.smoke)
