"""Starling's CrossGuard policy pack: plain rule functions (`rules`) and their wrappers (`pack`)."""
