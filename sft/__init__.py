"""geosft: training, evaluation, prediction and serving for geocomply."""
