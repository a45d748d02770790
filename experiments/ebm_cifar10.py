"""An IGEBM-style energy-based model for CIFAR-10 (GPU/TPU; the tests take one step on CPU).

Command:
  python -m gen.main --config=experiments/ebm_cifar10.py --workdir=runs/ebm_cifar10
Expected: a GPU/TPU run, not measured on a 2-core CPU; prepare the data once with
`gen prepare --dataset=cifar10`. The tests run one training step of this network on CPU.
"""

from experiments import base, common


def get_config(arg: str | None = None):
  """IGEBM (Du & Mordatch 2019) settings with gen's convolutional energy net.

  Their CIFAR-10 run: a ResNet energy with spectral norm, replay buffer of 10,000 with 5%
  re-initialisation from uniform noise, K = 60 Langevin steps of gradient step 10 and noise
  0.005 on [0, 1] images (a = 20, noise_scale 0.001 on gen's [-1, 1] images: x - (a/2) grad E
  + noise_scale sqrt(a) xi), grad clipping 0.01, energy regulariser alpha = 1, Adam 1e-4 with
  b1 = 0, b2 = 0.999, batch 128. gen's energy net is a plain SiLU CNN (not IGEBM's ResNet):
  three levels of 128/256/512 channels.
  """
  c = base.get_config(objective='ebm')
  c.data.name = 'cifar10'
  c.data.batch_size = 128
  c.model.name = 'energy_conv'
  c.model.energy_conv.ch = 128
  c.model.energy_conv.num_levels = 3
  c.model.energy_conv.spectral_norm = True
  c.ebm.loss = 'cd'
  c.ebm.energy_alpha = 1.0
  c.ebm.chain_init = 'buffer'
  c.ebm.buffer_size = 10_000
  c.ebm.reinit_prob = 0.05
  c.ebm.init_range = 1.0
  c.ebm.chain_steps = 60
  c.ebm.step_size = 20.0
  c.ebm.noise_scale = 0.001
  c.ebm.chain_grad_clip = 0.01
  c.ebm.sample.chain_steps = 60
  c.optim.lr = 1e-4
  c.optim.b1 = 0.0
  c.optim.b2 = 0.999
  c.train.num_steps = 100_000
  c.train.log_every = 100
  c.train.ckpt_every = 5000
  c.train.sample_every = 5000
  c.train.ema_rate = 0.999
  c.train.on_nonfinite = 'rollback'
  c.sample.num = 64
  c.eval.metrics = ('sliced_w2',)
  c.eval.num_samples = 1000
  return common.variant(c, arg, name='ebm_cifar10', smoke=None)  # no smoke variant
