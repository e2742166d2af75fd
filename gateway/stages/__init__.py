"""Pipeline stages (L3: they answer with the pipeline's Reply types). Each feature's L1 package holds
its logic; the stage here only adapts it to the Stage protocol."""
