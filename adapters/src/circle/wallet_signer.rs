//! A Circle developer-controlled wallet as the x402 payer (to be written).
