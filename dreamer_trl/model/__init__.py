"""The learned model: latents, networks, heads, recurrent cores, the RSSM and the world model."""
