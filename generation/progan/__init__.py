"""Conditional progressive GAN baseline (Karras et al., ICLR 2018, as used for pathology by Levine et
al., J Pathol 2020), made class-conditional with a projection discriminator (Miyato & Koyama, ICLR 2018).

`config` holds the hyperparameters, `networks` the generator and discriminator, `losses` WGAN-GP with
the drift term, `schedule` the progressive-growing phases, `train` the loop and `sample` the sampler
registered with `generation.sampling`. Imports no Django.
"""
