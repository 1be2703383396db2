import { rowStoreCases } from './row-store-cases';

rowStoreCases(false);
