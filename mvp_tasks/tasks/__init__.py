"""Thin @task functions: parse flags, load settings, plan, report, act."""
