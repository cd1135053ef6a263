"""Lauda chillers (ECO, Proline, Integral XT, Variocool)."""
