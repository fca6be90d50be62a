"""Blinded real-versus-synthetic reader studies: image sets, studies, readers, responses, results."""
