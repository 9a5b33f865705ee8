neither is this {
