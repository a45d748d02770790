"""DDPM on CIFAR-10 with DDPM's published network and hyper-parameters (GPU/TPU).

Command (prepare the data once with `gen prepare --dataset=cifar10`):
  python -m gen.main --config=experiments/ddpm_cifar10.py --workdir=runs/ddpm_cifar10
Expected: Ho et al. 2020 report FID 3.17 after 800k steps of batch 128 on a TPU v3-8. Not measured
on a 2-core CPU; the tests compile and run one step of this network on CPU.
Smoke variant: --config=experiments/ddpm_cifar10.py:smoke
"""

from experiments import base, common


def get_config(arg: str | None = None):
  """35.7M-parameter U-Net, linear betas 1e-4..0.02 over 1,000 steps, eps prediction."""
  c = base.get_config(objective='diffusion')
  common.cifar10_unet(c)
  c.diffusion.process = 'discrete_linear'
  c.diffusion.num_timesteps = 1000
  c.diffusion.parameterization = 'eps'
  c.diffusion.weighting = 'eps'
  c.diffusion.time_sampling = 'uniform'
  c.diffusion.sample.sampler = 'ddpm'
  return common.variant(c, arg, name='ddpm_cifar10', smoke=common.smoke)
