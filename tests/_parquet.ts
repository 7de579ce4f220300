/** Parquet files written the way the Hugging Face datasets library (pyarrow) lays them out, for tests. */
import { ByteWriter, parquetWrite } from "hyparquet-writer";

// parquet schema elements as the Hugging Face datasets library writes them (via pyarrow)
export type Element = Record<string, unknown>;
export const str = (name: string): Element[] => [{
  name,
  type: "BYTE_ARRAY",
  converted_type: "UTF8",
  repetition_type: "OPTIONAL",
}];
export const int = (
  name: string,
): Element[] => [{ name, type: "INT64", repetition_type: "OPTIONAL" }];
export const bin = (name: string): Element[] => [{
  name,
  type: "BYTE_ARRAY",
  repetition_type: "OPTIONAL",
}];
export const list = (name: string): Element[] => [
  { name, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
  { name: "list", repetition_type: "REPEATED", num_children: 1 },
  { name: "element", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
];
export const imageStruct = (name: string): Element[] => [
  { name, repetition_type: "OPTIONAL", num_children: 2 },
  ...bin("bytes"),
  ...str("path"),
];

/** Write a parquet file with an explicit schema: [schema of the column, its values] per column. */
export async function writeParquet(
  path: string,
  columns: Record<string, [Element[], unknown[]]>,
): Promise<void> {
  const names = Object.keys(columns);
  const writer = new ByteWriter();
  parquetWrite({
    writer,
    columnData: names.map((name) => ({ name, data: columns[name]![1] as never })),
    schema: [
      { name: "root", num_children: names.length },
      ...names.flatMap((n) => columns[n]![0]),
    ] as never,
  });
  await Deno.writeFile(path, new Uint8Array(writer.getBuffer()));
}
