"""`python -m mnist_ddp`: train, checkpoint and publish (see mnist_ddp.main)."""

from mnist_ddp.main import main

main()
