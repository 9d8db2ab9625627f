"""The study: every arm for several seeds, the comparisons stated before running and their
statistics, the ablation and controls, baselines, costs and the comparison with published numbers.

May import the engine; never report/.
"""
